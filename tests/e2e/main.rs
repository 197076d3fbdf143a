//! End-to-end tests: the real `jwtagent` binary, real sockets in temp directories.
