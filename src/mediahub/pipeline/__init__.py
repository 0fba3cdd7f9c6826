"""The ingest pipeline: small pure steps, each with clear inputs and outputs.

intake (spool + hash) -> sniff (real type) -> probe (header limits) -> exif ->
orient -> strip/original -> variants -> hashing; `image.process_image` and
`video.process_video` run the row for one file.
"""
