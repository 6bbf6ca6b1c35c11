// Where the player's requests go: the key grant appended to key requests, and
// the move from the primary edge to the fallback edge.
//
// Both edges serve the same paths under their signed manifest URLs, so a
// request for anything under the primary's base is sent to the fallback's
// base once the primary has failed at the network level (no answer, or a 5xx
// from the edge). hls.js retries a failed fragment or playlist through the
// same loader, so the retry lands on the fallback and playback continues
// without reloading the player. The choice sticks for the page's life.
//
// Signed edge URLs live minutes (security.stream_url_ttl): the player renews
// them through the stream API, and `renew()` swaps in the new signed bases.
// hls.js keeps requesting URLs resolved against the manifest URL it loaded
// first (the signature sits in the path, /s/<sig>/<expires>/hls/<id>/...), so
// every request under a base ever issued is rewritten onto the current one:
// playback continues across renewals without hls.js knowing.

/** The URL up to and including the last '/' of its path (query and fragment dropped). */
export function baseOf(url) {
  const u = new URL(url);
  u.search = '';
  u.hash = '';
  return u.href.slice(0, u.href.lastIndexOf('/') + 1);
}

/** `url` with `query` (a=1&b=2, no '?') appended. */
export function withQuery(url, query) {
  if (!query) return url;
  return url + (url.includes('?') ? '&' : '?') + query;
}

/** An edge failure worth leaving for the fallback: no answer at all, or the edge itself erring. */
export function isEdgeFailure(status) {
  return status === 0 || status >= 500;
}

export class EdgeRouter {
  /**
   * @param {object} opts
   * @param {string} opts.manifestUrl   the primary edge's manifest URL
   * @param {string|null} opts.fallbackManifestUrl  the fallback edge's, if any
   * @param {string|null} opts.keyGrant  query string for key requests
   * @param {string|null} opts.keyUri    the video's key URI (as the playlists name it)
   * @param {string} opts.keyPath        path prefix of key requests when no keyUri is known, e.g. /v1/keys/
   * @param {string|null} opts.keyToken  viewer token for key requests whose grant is bound to the viewer
   * @param {(event: object) => void} [opts.onFailover]
   */
  constructor({ manifestUrl, fallbackManifestUrl = null, keyGrant = null, keyUri = null, keyPath = '/v1/keys/',
                keyToken = null, onFailover = () => {} }) {
    this.primaryBase = baseOf(manifestUrl);
    this.fallbackBase = fallbackManifestUrl ? baseOf(fallbackManifestUrl) : null;
    // every base issued so far -> 'primary' / 'fallback' (what a request under it stands for)
    this.issued = new Map([[this.primaryBase, 'primary']]);
    if (this.fallbackBase) this.issued.set(this.fallbackBase, 'fallback');
    this.keyGrant = keyGrant;
    this.keyUri = keyUri;
    this.keyPath = keyPath;
    this.keyToken = keyToken;
    this.onFailover = onFailover;
    this.failedOver = false;
  }

  isKeyRequest(url) {
    if (this.keyUri) return url.split('?')[0] === this.keyUri;
    try {
      return new URL(url).pathname.startsWith(this.keyPath);
    } catch {
      return false;
    }
  }

  /** New signed URLs from a renewal: later requests go to these bases, the key requests carry the new grant. */
  renew({ manifestUrl, fallbackManifestUrl = null, keyGrant = null }) {
    this.primaryBase = baseOf(manifestUrl);
    this.issued.set(this.primaryBase, 'primary');
    if (fallbackManifestUrl) {
      this.fallbackBase = baseOf(fallbackManifestUrl);
      this.issued.set(this.fallbackBase, 'fallback');
    }
    if (keyGrant) this.keyGrant = keyGrant;
  }

  /** (the base `url` lies under, what it stands for) for a URL under any base issued so far, else null. */
  issuedBase(url) {
    for (const [base, role] of this.issued) if (url.startsWith(base)) return { base, role };
    return null;
  }

  /** The URL to actually request for hls.js's `url`: under the current signed base of the edge in use. */
  resolve(url) {
    if (this.isKeyRequest(url)) return this.keyGrant && !url.includes('sig=') ? withQuery(url, this.keyGrant) : url;
    const under = this.issuedBase(url);
    if (!under) return url;
    const target = this.failedOver || under.role === 'fallback' ? this.fallbackBase || this.primaryBase : this.primaryBase;
    return target + url.slice(under.base.length);
  }

  /** A request for `url` failed with `status`; true when this moved playback to the fallback. */
  failed(url, status) {
    if (this.failedOver || !this.fallbackBase || !isEdgeFailure(status) || this.issuedBase(url)?.role !== 'primary') {
      return false;
    }
    this.failedOver = true;
    this.onFailover({ from: this.primaryBase, to: this.fallbackBase, url, status });
    return true;
  }

  /** hls.js `xhrSetup`: open the request on the resolved URL and watch it for edge failures. */
  xhrSetup() {
    return (xhr, url) => {
      const target = this.resolve(url);
      xhr.addEventListener('loadend', () => {
        if (isEdgeFailure(xhr.status)) this.failed(url, xhr.status);
      });
      xhr.open('GET', target, true);
      if (this.keyToken && this.isKeyRequest(url)) xhr.setRequestHeader('Authorization', `Bearer ${this.keyToken}`);
    };
  }
}
