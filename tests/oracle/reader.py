"""Python's reading of a forwarded request, for tests/oracle.rs: a real http.server upstream
that answers with what `urllib.parse.parse_qsl` takes from the query, what `http.cookies`
takes from the Cookie headers, and the headers as `http.server` parsed them. Prints its port."""
import http.cookies
import http.server
import json
import sys
import urllib.parse


class Reader(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        query = self.path.split("?", 1)[1] if "?" in self.path else ""
        params = urllib.parse.parse_qsl(query, keep_blank_values=True)
        cookies = []
        raw = "; ".join(self.headers.get_all("Cookie") or [])
        try:
            jar = http.cookies.SimpleCookie()
            jar.load(raw)
            cookies = [[k, m.value] for k, m in jar.items()]
        except http.cookies.CookieError as e:
            cookies = [["!error", str(e)]]
        body = json.dumps(
            {"query": params, "cookies": cookies, "headers": list(self.headers.items())}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Reader)
print(server.server_address[1], flush=True)
server.serve_forever()
