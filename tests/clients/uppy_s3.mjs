// Uppy (@uppy/core + @uppy/aws-s3 5.x, `endpoint` + `headers`: the Companion-style routes) uploads one file
// headless in Node, through the plugin's own code: create, sign each part, PUT it to the bucket, list parts
// when resuming, complete. Prints one JSON object (see `report`) on stdout.
//
// Job (JSON file, argv[2]): {endpoint, token, file, name, type, meta, chunk_size, limit,
//   stop_after_parts?: n (write the state and exit once n parts are in: a closed tab),
//   resume?: {key, uploadId} (a new Uppy resumes it, as Golden Retriever does from its stored file state)}
import { readFileSync } from 'node:fs'
import AwsS3 from '@uppy/aws-s3'
import Uppy from '@uppy/core'
import NodeXMLHttpRequest from 'xhr2'

// Uppy PUTs the parts with XMLHttpRequest (AwsS3.uploadPartBytes), which Node lacks: xhr2 is one. xhr2 sends
// Buffers, not Blobs, so a Blob body (a slice of the File) is read into a Buffer first.
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

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const report = { ok: false, stopped: false, state: null, parts_put: [], calls: [], response: null, error: null }

// Every call Uppy makes to the API, with its status and, when it failed, the body (the problem+json).
const realFetch = globalThis.fetch
globalThis.fetch = async (url, options = {}) => {
  const response = await realFetch(url, options)
  const call = { method: options.method || 'GET', path: new URL(url).pathname, status: response.status }
  if (!response.ok) call.body = await response.clone().text()
  report.calls.push(call)
  return response
}

function finish(code) {
  process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(code))
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

const bytes = readFileSync(job.file)
const fileId = uppy.addFile({
  name: job.name,
  type: job.type,
  data: new File([bytes], job.name, { type: job.type }),
  meta: job.meta,
})
if (job.resume) uppy.setFileState(fileId, { s3Multipart: job.resume })

uppy.on('s3-multipart:part-uploaded', (file, part) => {
  report.parts_put.push(part.PartNumber)
  report.state = uppy.getFile(fileId).s3Multipart
  if (job.stop_after_parts && report.parts_put.length >= job.stop_after_parts) {
    report.stopped = true
    finish(0)
  }
})
uppy.on('upload-success', (file, response) => {
  report.ok = true
  report.state = uppy.getFile(fileId).s3Multipart
  report.response = response.body
})
uppy.on('upload-error', (file, error) => {
  report.error = { message: String(error?.message ?? error), status: error?.statusCode ?? error?.status ?? null }
})

try {
  await uppy.upload()
} catch (error) {
  report.error ??= { message: String(error?.message ?? error), status: null }
}
finish(report.ok ? 0 : 1)
