"""HTTP handler: a fresh void per connection whose only fd (besides stdio) is a socket to the
TLS terminator carrying the plaintext request. No key, no certificate, no network, no files
beyond the Python it runs on.

    handler.py CONNECTION_FD
"""

import socket
import sys

conn = socket.socket(fileno=int(sys.argv[1]))
request = b""
while b"\r\n\r\n" not in request and len(request) < 65536:
    chunk = conn.recv(4096)
    if not chunk:
        break
    request += chunk
words = request.split(b"\r\n", 1)[0].decode("latin-1").split()
if len(words) == 3 and words[0] in ("GET", "HEAD") and words[2].startswith("HTTP/1."):
    status, body = "200 OK", f"hello from a void: {words[0]} {words[1]}\n".encode()
else:
    status, body = "400 Bad Request", b"bad request\n"
head = f"HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
conn.sendall(head.encode() + (b"" if words[:1] == ["HEAD"] else body))
conn.close()
