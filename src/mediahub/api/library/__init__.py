"""The media library: server-rendered pages for owners and moderators, on the API's own services and rules."""
