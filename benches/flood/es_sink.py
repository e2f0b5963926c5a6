#!/usr/bin/env python3
"""A minimal Elasticsearch `_bulk` stand-in for the flood benchmark: answers every `create`
with 201 (in the filtered shape spip asks for) and counts documents.
Usage: es_sink.py PORT COUNTFILE (loopback only)."""
import http.server, json, sys, threading

port, count_file = int(sys.argv[1]), sys.argv[2]
lock, total = threading.Lock(), [0]
ITEM = b'{"create":{"status":201}}'

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        # NDJSON: an action line, then the document, per record.
        n = sum(1 for line in body.split(b"\n") if line) // 2
        with lock:
            total[0] += n
            with open(count_file, "w") as f:
                f.write(str(total[0]))
        answer = b'{"errors":false,"items":[' + b",".join([ITEM] * n) + b"]}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
