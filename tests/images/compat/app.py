"""The compat suite's python app: a WSGI app on the standard library's server, port 8000.
GET /      -> a greeting with the request count and the python version
POST /note -> stores the body in /data/notes (a VOLUME), GET /note reads it back."""
import os, sys
from wsgiref.simple_server import make_server, WSGIRequestHandler

hits = 0


def app(environ, start_response):
    global hits
    hits += 1
    path = environ.get("PATH_INFO", "/")
    if path == "/note":
        if environ["REQUEST_METHOD"] == "POST":
            n = int(environ.get("CONTENT_LENGTH") or 0)
            data = environ["wsgi.input"].read(n)
            with open("/data/notes", "ab") as f:
                f.write(data + b"\n")
                f.flush()
                os.fsync(f.fileno())
        try:
            body = open("/data/notes", "rb").read()
        except FileNotFoundError:
            body = b""
    else:
        body = f"hello from python {sys.version.split()[0]} wsgi, hit {hits}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class Quiet(WSGIRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


if __name__ == "__main__":
    with make_server("0.0.0.0", int(os.environ.get("PORT", "8000")), app, handler_class=Quiet) as s:
        print("serving on", s.server_port, flush=True)
        s.serve_forever()
