// An OpenID provider standing in for EGI Check-in in layercrypt's tests. TEST USE ONLY.
//
//   cd tests/oidc && npm ci --prefer-offline
//   node server.mjs [--port N] [--key-file FILE] [--keep-aud]
//
// Prints `READY <issuer>` on stdout once listening on 127.0.0.1 (port 0 or none: any free one;
// also $PORT, $KEY_FILE). The issuer is http://127.0.0.1:PORT/auth/realms/egi, with
// Check-in's (Keycloak's) paths under it:
//
//   /.well-known/openid-configuration      discovery (oidc-provider)
//   /protocol/openid-connect/auth/device   device authorization (oidc-provider)
//   /protocol/openid-connect/token         token: device_code, refresh_token (oidc-provider)
//   /protocol/openid-connect/certs         JWKS: every key in the key file (ours)
//   /protocol/openid-connect/userinfo      UserInfo for JWT access tokens (ours)
//   /protocol/openid-connect/token/introspect  RFC 7662 for JWT access tokens (ours)
//
// Like Check-in: RS256 JWT access tokens without `aud` (unless --keep-aud) and without group
// claims; the user's *current* entitlements come from UserInfo/introspection, read from an
// in-memory user table, so a membership change shows up at once, as at Check-in.
// oidc-provider only issues JWT access tokens through Resource Indicators (a default
// resource is configured) and refuses JWT access tokens at its own userinfo/introspection,
// hence our own handlers for those two paths.
//
// Clients: `layercrypt-cli` (public; device code + refresh tokens with offline_access) and
// `layercrypt-broker` (confidential, secret `broker-secret` or $BROKER_SECRET; introspection).
//
// Test-only routes (outside the issuer path):
//   POST /test/mint  {"sub", "entitlements"?, "ttl"?, "aud"?, "in_token"?, "claims"?}
//        -> {"access_token", "kid"}. Sets the user's entitlements when given; puts them into
//        the token only with in_token:true; `claims` is merged into the payload last (a null
//        value deletes a claim), to make expired, not-yet-valid or wrong-issuer tokens.
//   POST /test/users {"sub", "entitlements", "voperson_id"?, "introspection"?}  change a user's
//        entitlements; `introspection` is merged last into introspection answers for the user
//        (to make the issuer report another client or audience than the token names)
//   POST /test/device/approve {"user_code", "sub"}  approve a pending device code as `sub`
//   POST /test/rotate  add a new signing key (first in the JWKS; /test/mint signs with it)
//   GET  /test/jwks-key  the current signing key's public JWK
//   GET  /test/stats  {"discovery", "jwks", "userinfo", "introspect"}: request counters
//
// Re-polling a device code after it was redeemed revokes the whole grant (oidc-provider):
// a client must stop polling after success.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import process from 'node:process';

import Provider from 'oidc-provider';

// ---- arguments --------------------------------------------------------------------------
const args = process.argv.slice(2);
function arg(name, fallback) {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}
const PORT = Number(arg('--port', process.env.PORT ?? '0'));
const KEY_FILE = arg('--key-file', process.env.KEY_FILE);
const KEEP_AUD = args.includes('--keep-aud');
const BROKER_SECRET = process.env.BROKER_SECRET ?? 'broker-secret';
const PREFIX = '/auth/realms/egi';
const OIDC = '/protocol/openid-connect';
// The resource every access token is for unless the client asks for another (absolute URI).
const DEFAULT_RESOURCE = 'https://broker.layercrypt.test';
const SCOPES = ['openid', 'offline_access', 'profile', 'email', 'eduperson_entitlement', 'voperson_id', 'entitlements'];

// ---- signing keys -------------------------------------------------------------------------
// Private JWKs, newest first. Kept in --key-file (if given) so tokens survive a restart.
function newKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
}
let keys;
if (KEY_FILE && fs.existsSync(KEY_FILE)) {
  keys = JSON.parse(fs.readFileSync(KEY_FILE, 'utf8')).keys;
} else {
  keys = [newKey()];
}
function saveKeys() {
  if (KEY_FILE) fs.writeFileSync(KEY_FILE, JSON.stringify({ keys }), { mode: 0o600 });
}
saveKeys();
const publicJwk = ({ kty, n, e, kid, alg, use }) => ({ kty, n, e, kid, alg, use });

// ---- users: sub -> { entitlements, voperson_id } ------------------------------------------
const users = new Map();
const userOf = (sub) => users.get(sub) ?? { entitlements: [] };

const stats = { discovery: 0, jwks: 0, userinfo: 0, introspect: 0 };

// ---- small JWT helpers (node:crypto only) -------------------------------------------------
const b64u = (buf) => Buffer.from(buf).toString('base64url');
function signJwt(payload, key = keys[0]) {
  const header = { alg: 'RS256', typ: 'JWT', kid: key.kid };
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(payload))}`;
  const signature = crypto.sign('sha256', Buffer.from(input), crypto.createPrivateKey({ key, format: 'jwk' }));
  return `${input}.${b64u(signature)}`;
}
// Returns the payload of a JWT access token of this issuer, or null. Checks signature
// (RS256 with one of our keys), iss and exp, as Check-in does.
function verifyJwt(token, issuer) {
  const parts = String(token).split('.');
  if (parts.length !== 3) return null;
  try {
    const header = JSON.parse(Buffer.from(parts[0], 'base64url'));
    const key = keys.find((k) => k.kid === header.kid);
    if (!key || header.alg !== 'RS256') return null;
    const ok = crypto.verify('sha256', Buffer.from(`${parts[0]}.${parts[1]}`),
      crypto.createPublicKey({ key: publicJwk(key), format: 'jwk' }), Buffer.from(parts[2], 'base64url'));
    if (!ok) return null;
    const payload = JSON.parse(Buffer.from(parts[1], 'base64url'));
    if (payload.iss !== issuer || typeof payload.exp !== 'number' || payload.exp < Date.now() / 1000) return null;
    return payload;
  } catch {
    return null;
  }
}

// ---- HTTP plumbing ------------------------------------------------------------------------
function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(JSON.stringify(body));
}
async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}
async function readJson(req) {
  const text = await readBody(req);
  return text ? JSON.parse(text) : {};
}

// ---- start: listen first, so the issuer can name the real port --------------------------
const server = http.createServer();
server.listen(PORT, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}${PREFIX}`;
  const provider = makeProvider(issuer);
  const providerCallback = provider.callback();
  server.on('request', (req, res) => {
    handle(req, res, issuer, provider, providerCallback).catch((err) => {
      console.error(err);
      if (!res.headersSent) send(res, 500, { error: 'server_error', error_description: String(err) });
    });
  });
  console.log(`READY ${issuer}`);
});

function makeProvider(issuer) {
  const provider = new Provider(issuer, {
    jwks: { keys: [keys[0]] },
    clients: [
      {
        client_id: 'layercrypt-cli',
        token_endpoint_auth_method: 'none',
        grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
        response_types: [],
        redirect_uris: [],
      },
      {
        client_id: 'layercrypt-broker',
        client_secret: BROKER_SECRET,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      },
    ],
    findAccount: async (_ctx, sub) => ({
      accountId: sub,
      claims: async () => ({ sub, eduperson_entitlement: userOf(sub).entitlements }),
    }),
    scopes: SCOPES,
    claims: {
      openid: ['sub'],
      eduperson_entitlement: ['eduperson_entitlement'],
      entitlements: ['entitlements'],
      voperson_id: ['voperson_id'],
    },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? DEFAULT_RESOURCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async () => ({
          scope: SCOPES.join(' '),
          accessTokenFormat: 'jwt',
          accessTokenTTL: 3599,
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    formats: {
      customizers: {
        // Check-in's access tokens carry no `aud` by default.
        // oidc-provider insists on a truthy payload.aud before signing; a non-enumerable
        // property passes that check and is left out of the JSON that gets signed.
        jwt: async (_ctx, _token, jwt) => {
          if (!KEEP_AUD) {
            Object.defineProperty(jwt.payload, 'aud', { value: 'omitted', enumerable: false });
          }
          return jwt;
        },
      },
    },
    routes: {
      authorization: `${OIDC}/auth`,
      device_authorization: `${OIDC}/auth/device`,
      code_verification: '/device',
      token: `${OIDC}/token`,
      jwks: `${OIDC}/certs`,
      userinfo: `${OIDC}/userinfo`,
      introspection: `${OIDC}/token/introspect`,
      revocation: `${OIDC}/revoke`,
      end_session: `${OIDC}/logout`,
    },
    ttl: { DeviceCode: 600, RefreshToken: 30 * 24 * 3600 },
  });
  provider.proxy = false;
  // Surface provider-internal failures in the test log (the client only sees server_error).
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  provider.on('grant.error', (_ctx, err) => console.error('grant.error', err.message, err.error_description ?? ''));
  return provider;
}

async function handle(req, res, issuer, provider, providerCallback) {
  const url = new URL(req.url, issuer);
  const path = url.pathname;

  // -- test-only routes
  if (path === '/test/mint' && req.method === 'POST') {
    const body = await readJson(req);
    if (!body.sub) return send(res, 400, { error: 'sub required' });
    if (Array.isArray(body.entitlements)) users.set(body.sub, { ...userOf(body.sub), entitlements: body.entitlements });
    const now = Math.floor(Date.now() / 1000);
    const payload = {
      iss: issuer,
      sub: body.sub,
      iat: now,
      exp: now + (body.ttl ?? 3599),
      jti: crypto.randomUUID(),
      typ: 'Bearer',
      azp: 'layercrypt-cli',
      scope: 'openid profile eduperson_entitlement',
    };
    if (body.aud) payload.aud = body.aud;
    if (body.in_token) payload.eduperson_entitlement = body.entitlements ?? [];
    for (const [k, v] of Object.entries(body.claims ?? {})) {
      if (v === null) delete payload[k];
      else payload[k] = v;
    }
    return send(res, 200, { access_token: signJwt(payload), kid: keys[0].kid });
  }
  if (path === '/test/users' && req.method === 'POST') {
    const body = await readJson(req);
    if (!body.sub || !Array.isArray(body.entitlements)) return send(res, 400, { error: 'sub and entitlements required' });
    users.set(body.sub, {
      ...userOf(body.sub),
      entitlements: body.entitlements,
      voperson_id: body.voperson_id,
      introspection: body.introspection,
    });
    return send(res, 200, { ok: true });
  }
  if (path === '/test/device/approve' && req.method === 'POST') {
    const body = await readJson(req);
    const userCode = String(body.user_code ?? '').toUpperCase().replace(/\W/g, '');
    const code = await provider.DeviceCode.findByUserCode(userCode);
    if (!code || code.accountId || code.error) return send(res, 404, { error: 'no pending device code' });
    // What the consent step of a real login would record on the code and in the grant.
    const scope = code.params.scope ?? 'openid';
    const resource = code.params.resource ?? DEFAULT_RESOURCE;
    const grant = new provider.Grant({ accountId: body.sub, clientId: code.clientId });
    grant.addOIDCScope(scope);
    grant.addResourceScope(resource, scope);
    code.scope = scope;
    code.resource = resource;
    code.grantId = await grant.save();
    code.accountId = body.sub;
    code.authTime = Math.floor(Date.now() / 1000);
    await code.save();
    return send(res, 200, { ok: true });
  }
  if (path === '/test/rotate' && req.method === 'POST') {
    keys.unshift(newKey());
    saveKeys();
    return send(res, 200, { kid: keys[0].kid });
  }
  if (path === '/test/jwks-key') return send(res, 200, publicJwk(keys[0]));
  if (path === '/test/stats') return send(res, 200, stats);

  // -- our handlers for Check-in paths that oidc-provider cannot serve for JWTs
  if (path === `${PREFIX}${OIDC}/certs`) {
    stats.jwks += 1;
    return send(res, 200, { keys: keys.map(publicJwk) }, { 'content-type': 'application/jwk-set+json' });
  }
  if (path === `${PREFIX}${OIDC}/userinfo`) {
    stats.userinfo += 1;
    const auth = req.headers.authorization ?? '';
    const payload = auth.startsWith('Bearer ') ? verifyJwt(auth.slice(7), issuer) : null;
    if (!payload) {
      return send(res, 401, { error: 'invalid_token' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
    }
    const user = userOf(payload.sub);
    const answer = { sub: payload.sub, eduperson_entitlement: user.entitlements };
    if (user.voperson_id) answer.voperson_id = user.voperson_id;
    return send(res, 200, answer);
  }
  if (path === `${PREFIX}${OIDC}/token/introspect` && req.method === 'POST') {
    stats.introspect += 1;
    const form = new URLSearchParams(await readBody(req));
    let [id, secret] = [form.get('client_id'), form.get('client_secret')];
    const auth = req.headers.authorization ?? '';
    if (auth.startsWith('Basic ')) {
      [id, secret] = Buffer.from(auth.slice(6), 'base64').toString('utf8').split(':').map(decodeURIComponent);
    }
    if (id !== 'layercrypt-broker' || secret !== BROKER_SECRET) return send(res, 401, { error: 'invalid_client' });
    const payload = verifyJwt(form.get('token'), issuer);
    // Refresh tokens and other opaque tokens are not introspected here: inactive.
    if (!payload) return send(res, 200, { active: false });
    const user = userOf(payload.sub);
    return send(res, 200, {
      active: true,
      iss: payload.iss,
      sub: payload.sub,
      exp: payload.exp,
      iat: payload.iat,
      client_id: payload.azp ?? payload.client_id,
      ...(payload.aud !== undefined ? { aud: payload.aud } : {}),
      scope: payload.scope,
      token_type: 'Bearer',
      eduperson_entitlement: user.entitlements,
      ...(user.voperson_id ? { voperson_id: user.voperson_id } : {}),
      ...(user.introspection ?? {}),
    });
  }

  // -- everything else under the issuer path: oidc-provider, mounted as its docs describe
  if (path === `${PREFIX}/.well-known/openid-configuration`) stats.discovery += 1;
  if (path === PREFIX || path.startsWith(`${PREFIX}/`)) {
    req.originalUrl = req.url;
    req.url = req.url.slice(PREFIX.length) || '/';
    return providerCallback(req, res);
  }
  return send(res, 404, { error: 'not_found' });
}

// A harness that stops reading stdout after READY must not kill us with EPIPE.
process.stdout.on('error', () => {});
// Stop cleanly when the test harness ends us.
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
