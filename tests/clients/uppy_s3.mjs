// Uppy (@uppy/core + @uppy/aws-s3 5.x with `endpoint` + `headers`: the Companion-style routes) uploads files
// headless in Node through the plugin's own multipart code: create, sign each part, PUT it to the bucket, list
// the parts when resuming, complete. Prints one JSON object on stdout:
// {files: {name: {ok, stopped, state, parts_put, response, error, calls}}}.
//
// Job (JSON file, argv[2]): {endpoint, token, chunk_size, limit?,
//   files: [{file, name, type, meta, resume?: {key, uploadId}}],
//   stop_after_parts?: n (write the report and exit once n parts are in: a closed tab)}
// `resume` is what Golden Retriever restores in a browser: the file's s3Multipart state, so a new Uppy lists
// the parts already there and sends only the others.
import { readFileSync } from 'node:fs'
import AwsS3 from '@uppy/aws-s3'
import Uppy from '@uppy/core'
import NodeXMLHttpRequest from 'xhr2'

// Uppy PUTs the parts with XMLHttpRequest (AwsS3Multipart.uploadPartBytes), which Node lacks: xhr2 is one.
// xhr2 sends Buffers, not Blobs, so a Blob body (a slice of the File) is read into a Buffer first.
class XMLHttpRequest extends NodeXMLHttpRequest {
  send(body) {
    if (body instanceof Blob) {
      body.arrayBuffer().then((bytes) => super.send(Buffer.from(bytes)))
      return
    }
    super.send(body)
  }
}
globalThis.XMLHttpRequest = XMLHttpRequest

// After a refused completion Uppy aborts the upload without awaiting it (HTTPCommunicationQueue.uploadFile);
// that call's failure is an "Uncaught (in promise)" line in a browser's console, but would end Node.
process.on('unhandledRejection', (error) => console.error('unhandled rejection:', error?.message ?? error))

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const files = {}
const byUploadId = {}
const report = { files }

function finish(code) {
  process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(code))
}

// Every call Uppy makes to the API, with its status and, when it failed, the body (the problem+json),
// filed under the file it was for: by its name (creation) or its multipart upload id (later calls).
const realFetch = globalThis.fetch
globalThis.fetch = async (url, options = {}) => {
  const response = await realFetch(url, options)
  const { pathname } = new URL(url)
  const call = { method: options.method || 'GET', path: pathname, status: response.status }
  if (!response.ok) call.body = await response.clone().text()
  let name = null
  if (typeof options.body === 'string') name = JSON.parse(options.body).filename ?? null
  const uploadId = pathname.match(/\/s3\/multipart\/([^/]+)/)?.[1]
  if (name == null && uploadId) name = byUploadId[decodeURIComponent(uploadId)] ?? null
  if (name != null && files[name]) files[name].calls.push(call)
  if (response.ok && call.method === 'POST' && pathname.endsWith('/s3/multipart')) {
    byUploadId[(await response.clone().json()).uploadId] = name
  }
  return response
}

const uppy = new Uppy({ autoProceed: false })
uppy.use(AwsS3, {
  endpoint: job.endpoint,
  headers: { Authorization: `Bearer ${job.token}` },
  shouldUseMultipart: true,
  getChunkSize: () => job.chunk_size,
  limit: job.limit ?? 6,
  retryDelays: [],
})

const ids = {}
for (const spec of job.files) {
  files[spec.name] = {
    ok: false, stopped: false, state: null, parts_put: [], response: null, error: null, calls: [],
  }
  const bytes = readFileSync(spec.file)
  ids[spec.name] = uppy.addFile({
    name: spec.name,
    type: spec.type,
    data: new File([bytes], spec.name, { type: spec.type }),
    meta: spec.meta,
  })
  if (spec.resume) {
    uppy.setFileState(ids[spec.name], { s3Multipart: spec.resume })
    byUploadId[spec.resume.uploadId] = spec.name
  }
}

function track(file) {
  const state = uppy.getFile(file.id)?.s3Multipart
  if (state?.uploadId) byUploadId[state.uploadId] = file.name
  files[file.name].state = state ?? null
}

let partsIn = 0
uppy.on('s3-multipart:part-uploaded', (file, part) => {
  track(file)
  files[file.name].parts_put.push(part.PartNumber)
  partsIn += 1
  if (job.stop_after_parts && partsIn >= job.stop_after_parts) {
    files[file.name].stopped = true
    finish(0)
  }
})

uppy.on('upload-success', (file, response) => {
  track(file)
  files[file.name].ok = true
  files[file.name].response = response.body
})
uppy.on('upload-error', (file, error) => {
  track(file)
  files[file.name].error = { message: String(error?.message ?? error), status: error?.statusCode ?? null }
})

try {
  await uppy.upload()
} catch (error) {
  report.error = String(error?.message ?? error)
}
finish(Object.values(files).every((file) => file.ok) ? 0 : 1)
