// A DPoP client made with the npm `dpop` library, for tests/idp_interop.rs: it makes a key pair,
// obtains a DPoP-bound access token from oidc-provider's token endpoint (client_credentials,
// answering a `use_dpop_nonce` challenge if the provider asks), then makes the proofs the test
// sends to the gateway, and prints them as one JSON line:
// {"token_type", "access_token", "proofs": {"valid", "again", "stale", "other_url", "other_method"}}.
//
// Usage: node dpop_client.mjs TOKEN_ENDPOINT CLIENT_ID CLIENT_SECRET RESOURCE SCOPE URL
// where URL is the gateway URL the proofs are for (GET).
import { generateKeyPair, generateProof } from 'dpop';

const [tokenEndpoint, clientId, clientSecret, resource, scope, url] = process.argv.slice(2);
const keypair = await generateKeyPair('ES256');

async function tokenRequest(nonce) {
  const proof = await generateProof(keypair, tokenEndpoint, 'POST', nonce);
  return fetch(tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: proof },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: clientId,
      client_secret: clientSecret,
      resource,
      scope,
    }),
  });
}

let response = await tokenRequest();
if (response.status === 400 && response.headers.get('dpop-nonce')) {
  response = await tokenRequest(response.headers.get('dpop-nonce'));
}
const body = await response.json();
if (!response.ok) {
  console.error('token endpoint:', response.status, JSON.stringify(body));
  process.exit(1);
}
const token = body.access_token;

const proof = () => generateProof(keypair, url, 'GET', undefined, token);
const valid = await proof();
const again = await proof();
const otherUrl = await generateProof(keypair, `${url}/other`, 'GET', undefined, token);
const otherMethod = await generateProof(keypair, url, 'DELETE', undefined, token);
// Ten minutes ago, far outside the gateway's window: the library stamps `iat` from the clock.
const realNow = Date.now;
Date.now = () => realNow() - 600_000;
const stale = await proof();
Date.now = realNow;

console.log(JSON.stringify({
  token_type: body.token_type,
  access_token: token,
  proofs: { valid, again, stale, other_url: otherUrl, other_method: otherMethod },
}));
