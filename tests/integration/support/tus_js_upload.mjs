// Drives tus-js-client (the npm package, under node) against framelog's upload API for the interop tests.
//   node tus_js_upload.mjs '{"endpoint": ..., "file": ..., "token": ..., "chunkSize": null,
//                            "abortAt": null, "uploadUrl": null, "checksum": false}'
// Prints one JSON line per event: {"event": "created"|"aborted"|"success"|"error", "url", "offset", ...}.
// chunkSize null keeps the client's default (Infinity: the whole file in one PATCH); abortAt aborts the
// upload once that many bytes were sent (the request is cut mid-body); uploadUrl resumes an upload.
import { createReadStream, statSync } from 'node:fs'
import { basename } from 'node:path'
import { Upload } from 'tus-js-client'

const opts = JSON.parse(process.argv[2])
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const size = statSync(opts.file).size

const options = {
  endpoint: opts.endpoint,
  uploadUrl: opts.uploadUrl ?? undefined,
  headers: { Authorization: `Bearer ${opts.token}` },
  metadata: { filename: basename(opts.file), filetype: 'video/mp4' },
  uploadSize: size,
  retryDelays: [100, 500, 1000],
  removeFingerprintOnSuccess: true,
  onAfterResponse: (req, res) => {
    if (req.getMethod() === 'HEAD') say({ event: 'head', offset: Number(res.getHeader('Upload-Offset')) })
  },
  onError: (err) => { say({ event: 'error', message: String(err) }); process.exit(1) },
  onSuccess: () => { say({ event: 'success', url: upload.url, offset: size }); process.exit(0) },
}
if (opts.chunkSize) options.chunkSize = opts.chunkSize
let aborted = false
options.onProgress = (sent) => {
  if (opts.abortAt != null && !aborted && sent >= opts.abortAt) {
    aborted = true
    upload.abort(false).then(() => { say({ event: 'aborted', url: upload.url, sent }); process.exit(0) })
  }
}
options.onUploadUrlAvailable = () => say({ event: 'created', url: upload.url })

const upload = new Upload(createReadStream(opts.file), options)
upload.start()
