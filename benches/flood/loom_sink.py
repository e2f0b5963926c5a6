#!/usr/bin/env python3
"""A minimal Loom stand-in for the flood benchmark: accepts POSTed JSON arrays, answers 200,
and counts records. Usage: loom_sink.py PORT COUNTFILE (loopback only)."""
import http.server, json, sys, threading

port, count_file = int(sys.argv[1]), sys.argv[2]
lock, total = threading.Lock(), [0]

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        n = len(json.loads(body))
        with lock:
            total[0] += n
            with open(count_file, "w") as f:
                f.write(str(total[0]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
