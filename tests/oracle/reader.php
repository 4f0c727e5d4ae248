<?php
// PHP's reading of a forwarded request, for tests/oracle.rs: the router script of `php -S`,
// answering with $_GET and $_COOKIE (flattened: `a[b]=c` is reported as `a`, `c`), and the
// headers as getallheaders() and $_SERVER['HTTP_*'] give them.
function flat($name, $v, &$out) {
    if (is_array($v)) {
        foreach ($v as $inner) {
            flat($name, $inner, $out);
        }
    } else {
        $out[] = [(string)$name, (string)$v];
    }
}
$query = [];
foreach ($_GET as $k => $v) {
    flat($k, $v, $query);
}
$cookies = [];
foreach ($_COOKIE as $k => $v) {
    flat($k, $v, $cookies);
}
$headers = [];
foreach (getallheaders() as $k => $v) {
    $headers[] = [(string)$k, (string)$v];
}
foreach ($_SERVER as $k => $v) {
    if (strncmp($k, 'HTTP_', 5) === 0) {
        $headers[] = [substr($k, 5), (string)$v];
    }
}
header('Content-Type: application/json');
echo json_encode(
    ['query' => $query, 'cookies' => $cookies, 'headers' => $headers],
    JSON_INVALID_UTF8_SUBSTITUTE
);
