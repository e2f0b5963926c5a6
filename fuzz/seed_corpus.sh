#!/bin/sh
# Seeds fuzz/corpus/<target>/ from tests/data/vectors (corpus dirs are git-ignored).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
vectors=${VECTORS:-$here/../tests/data/vectors}
[ -d "$vectors" ] || { echo "no vectors at $vectors" >&2; exit 1; }
python3 - "$vectors" "$here/corpus" <<'PY'
import json, os, struct, sys
vec, corpus = sys.argv[1], sys.argv[2]
def put(target, name, data):
    d = os.path.join(corpus, target); os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), "wb").write(data)
def records(msg, cuts):
    out, i = b"", 0
    while msg:
        n = min(cuts[i] if i < len(cuts) else len(msg), len(msg))
        out += bytes([22, 3, 1]) + struct.pack(">H", n) + msg[:n]
        msg, i = msg[n:], i + 1
    return out
for i, v in enumerate(json.load(open(os.path.join(vec, "ja4_ja3_clienthello_vectors.json")))["vectors"]):
    m = bytes.fromhex(v["client_hello_handshake_hex"])
    put("tls_client_hello", f"ch{i}", records(m, []))
    put("tls_client_hello", f"ch{i}_split", records(m, [len(m) // 3, 5]))
    put("inspect", f"ch{i}", records(m, []))
for i, v in enumerate(json.load(open(os.path.join(vec, "ja4h_vectors.json")))["vectors"]):
    req = f"{v['method']} / {v['version']}\r\n" + "".join(f"{k}: {x}\r\n" for k, x in v["headers_in_order"]) + "\r\n"
    put("http_request", f"req{i}", req.encode())
    put("inspect", f"req{i}", req.encode())
def kexinit(banner, lists):
    p = bytes([20]) + b"\x11" * 16
    for l in lists:
        p += struct.pack(">I", len(l)) + l.encode()
    p += b"\x00" + b"\x00" * 4
    pad = 8 - (len(p) + 5) % 8
    if pad < 4: pad += 8
    return (banner + "\r\n").encode() + struct.pack(">IB", 1 + len(p) + pad, pad) + p + b"\x00" * pad
for i, v in enumerate(json.load(open(os.path.join(vec, "hassh_vectors.json")))["vectors"]):
    if "client_kexinit_namelists" in v:
        s = kexinit(v["client_banner"], v["client_kexinit_namelists"])
        put("ssh_kexinit", f"kex{i}", s); put("inspect", f"kex{i}", s)
    else:
        put("ssh_kexinit", f"banner{i}", (v["client_banner"] + "\n").encode())
put("config", "minimal", b'name = "sensor-1"\nport = 8080\n')
put("config", "full", b'name = "s"\nip = "0.0.0.0"\nport = 443\ncert_path = "c.pem"\nkey_path = "k.pem"\n'
    b'log_file = ""\nread_timeout_seconds = 30\ncommunity_id_seed = 1\n\n[loom]\nenabled = true\n'
    b'url = "https://loom.example/ingest"\nsensor_id = "x"\ntoken = "t"\nflush_interval = "10s"\n')
PY
for t in tls_client_hello http_request ssh_kexinit inspect config; do
    echo "$t: $(ls "$here/corpus/$t" | wc -l) seeds"
done
