// Bundles the creator upload page (web/upload/upload.js: Uppy from node_modules) into web/dist/ with esbuild,
// so the API serves it without a CDN. Run by scripts/bootstrap.sh after npm ci; `node scripts/build_web.mjs`.
import { build } from 'esbuild'

await build({
  entryPoints: { upload: 'web/upload/upload.js' },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  outdir: 'web/dist',
  logLevel: 'warning',
  legalComments: 'linked',
})
