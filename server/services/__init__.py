"""Use cases. Each public method is one unit of work; REST and Socket.IO call the same ones."""
