// tus-js-client uploads one file in Node, as an app would. Prints one JSON object (see `report`) on stdout.
//
// Job (JSON file, argv[2]): {endpoint, token, file, metadata, chunk_size?, upload_url?, url_storage?,
//   stop_after_chunks?: n (abort once n PATCHes were accepted, write the report and exit: a killed app),
//   terminate_after_chunks?: n (abort with termination: DELETE), parallel_uploads?,
//   retry_delays?: [ms] (default: none, so an error status shows as it came),
//   upload_data_during_creation?: true (the creation POST carries the first chunk),
//   chunk_delay_ms?: wait before each PATCH (a slow link), progress_file?: a JSON line per accepted chunk,
//   bad_checksum?: true (each PATCH carries an Upload-Checksum that does not match its bytes; tus-js-client
//   itself has no checksum support, so the header is added as an app would: in onBeforeRequest)}
// With `url_storage` (a file) the upload URL is kept in tus-js-client's FileUrlStorage, and a new process
// resumes the upload it finds there for the same file (findPreviousUploads + resumeFromPreviousUpload).
import { appendFileSync, readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { FileUrlStorage, Upload } from 'tus-js-client'

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const report = {
  ok: false, stopped: false, terminated: false, url: null,
  requests: [], last_response: null, error: null,
}

function headersOf(res) {
  const names = ['location', 'upload-offset', 'upload-length', 'media-id', 'media-error', 'upload-expires']
  return Object.fromEntries(names.map((name) => [name, res.getHeader(name) ?? null]))
}

function responseOf(res) {
  return { status: res.getStatus(), headers: headersOf(res), body: res.getBody() ?? '' }
}

function finish(code) {
  process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(code))
}

const bytes = readFileSync(job.file)
let chunks = 0
const options = {
  endpoint: job.endpoint,
  headers: { Authorization: `Bearer ${job.token}` },
  metadata: job.metadata,
  retryDelays: job.retry_delays ?? null,
  removeFingerprintOnSuccess: true,
  async onBeforeRequest(req) {
    if (req.getMethod() !== 'PATCH') return
    if (job.bad_checksum) req.setHeader('Upload-Checksum', `sha256 ${Buffer.alloc(32).toString('base64')}`)
    if (job.chunk_delay_ms) await sleep(job.chunk_delay_ms)
  },
  onAfterResponse(req, res) {
    report.requests.push({
      method: req.getMethod(),
      url: req.getURL(),
      offset: req.getHeader('Upload-Offset') ?? null,
      concat: req.getHeader('Upload-Concat') ?? null,
      status: res.getStatus(),
      headers: headersOf(res),
    })
  },
  onChunkComplete(size, accepted) {
    chunks += 1
    if (job.progress_file) {
      appendFileSync(job.progress_file, `${JSON.stringify({ url: upload.url, offset: accepted })}\n`)
    }
    if (job.stop_after_chunks && chunks >= job.stop_after_chunks) {
      upload.abort().then(() => {
        report.stopped = true
        report.url = upload.url
        finish(0)
      })
    } else if (job.terminate_after_chunks && chunks >= job.terminate_after_chunks) {
      upload.abort(true).then(() => {
        report.terminated = true
        report.url = upload.url
        finish(0)
      }, (error) => {
        report.error = { message: error.message, status: error.originalResponse?.getStatus() ?? null }
        finish(1)
      })
    }
  },
  onSuccess({ lastResponse }) {
    report.ok = true
    report.url = upload.url
    report.last_response = responseOf(lastResponse)
    finish(0)
  },
  onError(error) {
    const res = error.originalResponse
    report.url = upload.url
    report.error = {
      message: error.message, status: res ? res.getStatus() : null, response: res ? responseOf(res) : null,
    }
    finish(1)
  },
}
if (job.chunk_size) options.chunkSize = job.chunk_size
if (job.upload_url) options.uploadUrl = job.upload_url
if (job.upload_data_during_creation) options.uploadDataDuringCreation = true
if (job.url_storage) options.urlStorage = new FileUrlStorage(job.url_storage)
if (job.parallel_uploads) options.parallelUploads = job.parallel_uploads

const upload = new Upload(bytes, options)
if (job.url_storage) {
  const previous = await upload.findPreviousUploads()
  if (previous.length > 0) upload.resumeFromPreviousUpload(previous[0])
}
upload.start()
