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
# http2: the first byte is the read size; the rest follows the client preface. curl's h2c
# GET and POST (tests in src/protocols/http2.rs hold the same captures).
h2_get = bytes.fromhex("00001204000000000000030000006400040200000000020000000000000408000000000001ff000100002801050000000182048a63760bdb706fff3b401f86418a089d5c0b8170dc79a7037a871cc5a92c05707f53032a2f2a")
h2_post = bytes.fromhex("00001204000000000000030000006400040200000000020000000000000408000000000001ff00010000580104000000018304856283cc6abf86418a089d5c0b8170dc79a7057a871cc5a92c05707f53032a2f2a1f11861c01fb523805518b2d4b70ddf45abefb4005df0f0d0232325f981d75d0620d263d4c795bc78f0b4a7b295adb282d443c8593000016000100000001757365723d61646d696e26706173733d534543524554")
for name, frames in [("get", h2_get), ("post", h2_post)]:
    put("http2", name, bytes([255]) + frames)
    put("http2", name + "_reads7", bytes([7]) + frames)
for i, v in enumerate(json.load(open(os.path.join(vec, "hassh_vectors.json")))["vectors"]):
    if "client_kexinit_namelists" in v:
        s = kexinit(v["client_banner"], v["client_kexinit_namelists"])
        put("ssh_kexinit", f"kex{i}", s); put("inspect", f"kex{i}", s)
    else:
        put("ssh_kexinit", f"banner{i}", (v["client_banner"] + "\n").encode())
ntlm_dir = os.path.join(os.path.dirname(vec.rstrip("/")), "ntlm")
for name in sorted(os.listdir(ntlm_dir)):
    if name.endswith(".hex"):
        put("ntlm", name[:-4], bytes.fromhex(open(os.path.join(ntlm_dir, name)).read().strip()))
# credssp: the read size, then the TSRequests of FreeRDP's NLA (after its 45-byte Connection
# Request) from tests/data/rdp/xfreerdp-nla.hex.
nla = bytes.fromhex(open(os.path.join(os.path.dirname(vec.rstrip("/")), "rdp", "xfreerdp-nla.hex")).read().strip())[0x2d:]
put("credssp", "xfreerdp", bytes([255]) + nla)
put("credssp", "xfreerdp_reads7", bytes([7]) + nla)
put("config", "minimal", b'name = "sensor-1"\nport = 8080\n')
put("config", "full", b'name = "s"\nip = "0.0.0.0"\nport = 443\ncert_path = "c.pem"\nkey_path = "k.pem"\n'
    b'log_file = ""\nread_timeout_seconds = 30\ncommunity_id_seed = 1\n\n[loom]\nenabled = true\n'
    b'url = "https://loom.example/ingest"\nsensor_id = "x"\ntoken = "t"\nflush_interval = "10s"\n')
# db_responders: first byte picks the responder (bit 7: it greets), the second the read size;
# then a real client's stream (mariadb, psql, redis-cli, an RFB 3.8 viewer, nmap's mongodb probe).
for name, pick, stream in [
    ("mysql", 0x80, "41000001" + "8da2bf00" + "00000001" + "21" + "00" * 23 + "5345435245540014" + "fb" * 20 + "73686f7000"),
    ("postgres", 0x01, "0000000804d2162f000000150003000075736572005345435245540000700000000c68756e7465723200"),
    ("redis", 0x02, b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\nCONFIG SET dir /tmp\r\n".hex()),
    ("vnc", 0x83, b"RFB 003.008\n".hex() + "02" + "4d" * 16),
    ("mongodb", 0x04, "410000003a300000ffffffffd407000000000000746573742e24636d640000000000ffffffff1b000000" "0173657276657253746174757300000000000000f03f00"),
]:
    put("db_responders", name, bytes([pick, 7]) + bytes.fromhex(stream))
# SYNs: a minimal IPv4 header + TCP header around each vector's options (padded to 4 bytes).
for i, v in enumerate(json.load(open(os.path.join(vec, "ja4t_vectors.json")))["vectors"]):
    opts = bytes.fromhex(v["syn_tcp_options_hex"]); opts += bytes(-len(opts) % 4)
    tcp = struct.pack(">HHIIBBHHH", 40000, 80, 1, 0, (5 + len(opts) // 4) << 4, 2, v["syn_window"], 0, 0) + opts
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, bytes(4), bytes(4))
    put("syn", f"syn{i}", ip + tcp)
PY
# UDP datagrams: the captured client datagrams and the RFC 9001 QUIC Initial.
udp=$here/../tests/data/udp
mkdir -p "$here/corpus/datagram"
cp "$udp"/*.bin "$here/corpus/datagram/"
python3 -c "import sys; open(sys.argv[2], 'wb').write(bytes.fromhex(open(sys.argv[1]).read()))" \
    "$udp/rfc9001_a2_client_initial.hex" "$here/corpus/datagram/quic_initial"
for t in tls_client_hello http_request ssh_kexinit inspect config http2 db_responders ntlm syn credssp datagram; do
    echo "$t: $(ls "$here/corpus/$t" | wc -l) seeds"
done
