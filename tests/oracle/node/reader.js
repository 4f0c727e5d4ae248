// Node's reading of a forwarded request, for tests/oracle.rs: a real node:http upstream that
// answers with what URLSearchParams takes from the query, what the `cookie` package (Express's
// cookie parser) takes from the Cookie header, and the raw header list. Prints its port.
const http = require("node:http");
const cookie = require("cookie");

const server = http.createServer((req, res) => {
  const at = req.url.indexOf("?");
  const query = at < 0 ? "" : req.url.slice(at + 1);
  const params = [...new URLSearchParams(query)];
  let cookies = [];
  try {
    cookies = Object.entries(cookie.parse(req.headers.cookie || ""));
  } catch (e) {
    cookies = [["!error", String(e)]];
  }
  const headers = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
  }
  const body = JSON.stringify({ query: params, cookies, headers });
  res.writeHead(200, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
});
server.listen(0, "127.0.0.1", () => {
  console.log(server.address().port);
});
