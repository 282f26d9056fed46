//! RFC 8785 (in progress)
