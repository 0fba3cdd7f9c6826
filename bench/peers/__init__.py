"""The delivery section's peers: thumbor's pinned requirements, ipx's package files and server script, and a
bare pyvips-in-Starlette reference."""
