// A real OpenID provider (oidc-provider, a certified implementation) on loopback for
// tests/idp_interop.rs. It serves discovery and JWKS, and issues JWT access tokens to one
// client_credentials client through resource indicators (RFC 8707): each resource below is an
// API whose tokens are signed with its own algorithm. With DPoP on, a token request that carries
// a DPoP proof (dpop_client.mjs) gets a DPoP-bound token.
//
// Started as `node server.mjs`; listens on 127.0.0.1 on a free port and prints one JSON line,
// {"issuer", "token_endpoint", "client_id", "client_secret", "resources": {alg: resource}}, then
// serves until stdin closes or it gets SIGTERM.
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

// Signing keys made at start, one per algorithm, so no key material is committed.
const jwk = (pair, kid, alg) => ({ ...pair.privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' });
const keys = [
  jwk(generateKeyPairSync('rsa', { modulusLength: 2048 }), 'rsa-1', 'RS256'),
  jwk(generateKeyPairSync('ec', { namedCurve: 'P-256' }), 'ec-1', 'ES256'),
  jwk(generateKeyPairSync('ed25519'), 'ed-1', 'EdDSA'),
];

// Resource indicator -> signing algorithm of its access tokens. `https://unlisted.example` is an
// API the gateway does not list in `audiences`.
const RESOURCES = {
  'https://rs256.api.example': 'RS256',
  'https://es256.api.example': 'ES256',
  'https://eddsa.api.example': 'EdDSA',
  'https://unlisted.example': 'RS256',
};
const SCOPES = 'read:orders write:orders';
const CLIENT = { client_id: 'orders-service', client_secret: 'interop-test-secret-not-a-real-one' };

const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  jwks: { keys },
  clients: [{
    ...CLIENT,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_post',
    scope: SCOPES,
  }],
  scopes: SCOPES.split(' '),
  features: {
    clientCredentials: { enabled: true },
    // DPoP (RFC 9449): a token request with a DPoP proof gets a DPoP-bound token (cnf.jkt);
    // one without stays a Bearer token.
    dPoP: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'https://rs256.api.example',
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        const alg = RESOURCES[resource];
        if (!alg) throw new Provider.errors.InvalidTarget();
        return {
          scope: SCOPES,
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg } },
        };
      },
    },
  },
  // Claims shaped like the big providers' custom claims: an Auth0-style namespaced roles claim
  // and Keycloak's realm_access.roles, read by the gateway through JSON Pointers.
  extraTokenClaims: () => ({
    'https://example.com/roles': ['billing-admin'],
    realm_access: { roles: ['orders-reader'] },
  }),
});
provider.on('server_error', (ctx, err) => console.error('oidc-provider server_error:', err));
server.on('request', provider.callback());

const discovery = `${issuer}/.well-known/openid-configuration`;
const res = await fetch(discovery);
const { token_endpoint: tokenEndpoint } = await res.json();
const byAlg = Object.fromEntries(
  Object.entries(RESOURCES).filter(([r]) => r !== 'https://unlisted.example').map(([r, a]) => [a, r]),
);
console.log(JSON.stringify({
  issuer,
  token_endpoint: tokenEndpoint,
  ...CLIENT,
  resources: byAlg,
  unlisted_resource: 'https://unlisted.example',
}));

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
