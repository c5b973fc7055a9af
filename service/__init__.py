"""mesoscan's service side: CLI, storage, HTTP API and web pages. Uses ``pipelines``."""
