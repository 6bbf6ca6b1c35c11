// The signed-in user's bearer token for the pages framelog serves (the player, the owner's
// analytics page): from the page's #viewer_token= (a fragment is never sent to a server) or
// from localStorage, where the first page that got it kept it.
export const TOKEN_KEY = 'framelog.viewer_token';

export function viewerToken(hash = globalThis.location?.hash || '') {
  const fromHash = new URLSearchParams(hash.slice(1)).get('viewer_token');
  try {
    if (fromHash) localStorage.setItem(TOKEN_KEY, fromHash);
    return fromHash || localStorage.getItem(TOKEN_KEY);
  } catch {
    return fromHash;
  }
}
