//! HTTP/1.x request head.
