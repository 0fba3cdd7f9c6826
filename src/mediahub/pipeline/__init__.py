"""The ingest pipeline: small pure steps, each with clear inputs and outputs.

The steps, numbered as in README's "How a file is handled" and in each module:
1 intake (spool; the byte digests on a side thread) -> 2 sniff (real type) ->
3 structure (container walk) -> 4 probe (header limits) -> 5 exif ->
6 orient + strip/original -> 7 variants -> 8 fingerprint (pHash, pixel digest,
perceptual fingerprint); 9, store and commit, is `media/ingest.py`'s.
`image.process_image` runs steps 3-8 for an image, `video.process_video` their
video counterparts.
"""
