"""The REST edge: thin aiohttp handlers, marshmallow schemas, middlewares."""
