#!/usr/bin/env python3
"""A minimal token server for docker-registry's token auth (distribution's token spec), for tests.

Issues RS256 JWTs signed with KEY (via the openssl CLI), carrying the signing certificate in the
`x5c` header so the registry can check it against its rootcertbundle. Basic credentials
USER:PASSWORD get the access they ask for; anonymous requests are refused (401).
Usage: token_server.py PORT KEY CERT_PEM USER PASSWORD ISSUER SERVICE
"""
import base64, http.server, json, os, ssl, subprocess, sys, time, urllib.parse

port, key, cert_pem, user, password, issuer, service = sys.argv[1:8]
cert_der = ssl.PEM_cert_to_DER_cert(open(cert_pem).read())
expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(url.query)
        if url.path != "/token" or q.get("service", [""])[0] != service:
            self.send_response(404)
            self.end_headers()
            return
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}')
            return
        access = []
        for scope in q.get("scope", []):
            kind, name, actions = scope.split(":", 2)
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(cert_der).decode()]}
        claims = {"iss": issuer, "sub": user, "aud": service, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": b64u(os.urandom(12)), "access": access}
        signing_input = b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(claims).encode())
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing_input.encode(),
                             capture_output=True, check=True).stdout
        token = signing_input + "." + b64u(sig)
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.HTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()
