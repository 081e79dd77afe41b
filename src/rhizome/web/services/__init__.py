"""What the web layer does beyond HTTP: the operations the API routes, the pages and the
event stream share (no request or response objects here)."""
