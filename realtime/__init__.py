"""The Socket.IO edge: the server object, connect authentication, thin event handlers."""
