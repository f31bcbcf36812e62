// Two OpenID Providers (npm `oidc-provider`, the certified Node.js OP) on loopback, for Astralog's
// SSO tests. Started by tests/oidc_provider.py; never used outside tests.
//
// IDP_CONFIG (JSON): {"issuers": [{"name": "a", "jwks": {"keys": [<private JWKs>]}}, ...]}. Each
// issuer listens on its own free loopback port (issuer http://127.0.0.1:<port>), with dynamic
// client registration (POST /reg), the development login and consent pages, RP-initiated and
// back-channel logout. When every issuer listens, one line goes to stdout:
//   {"ready": {"a": "http://127.0.0.1:41234", ...}}
//
// Test controls, beside the provider's own routes (the test owns the keys, so it can also sign
// tokens the RP must refuse):
//   PUT /__test/accounts/<sub>   JSON claims of that account (groups, email, ...)
//   PUT /__test/jwks             {"keys": [...]}: rotate the signing keys (a new provider instance;
//                                registered clients and accounts are kept)
import http from 'node:http';

import Provider from 'oidc-provider';
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

const config = JSON.parse(process.env.IDP_CONFIG ?? '{"issuers": []}');
const accounts = new Map(); // `${issuer name}:${sub}` -> claims

function configuration(name, jwks, adapter) {
  return {
    adapter,
    jwks,
    features: {
      devInteractions: { enabled: true },
      registration: { enabled: true },
      registrationManagement: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups', 'department'],
    },
    // Claims of the requested scopes go into the ID token too, as many enterprise IdPs do.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    cookies: { keys: [`astralog-test-idp-${name}`] },
    async findAccount(ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          return { sub, ...(accounts.get(`${name}:${sub}`) ?? {}) };
        },
      };
    },
    // The provider refuses to POST back-channel logouts to loopback (its SSRF guard); here the
    // relying party under test IS on loopback, so its requests go out without that dispatcher.
    fetch(url, options) {
      const { dispatcher, ...rest } = options;
      return globalThis.fetch(url, rest);
    },
    async renderError(ctx, out) {
      ctx.type = 'json';
      ctx.body = out;
    },
  };
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

async function control(issuer, req, res) {
  const path = new URL(req.url, issuer.url).pathname;
  const body = await readJson(req);
  if (req.method === 'PUT' && path.startsWith('/__test/accounts/')) {
    const sub = decodeURIComponent(path.slice('/__test/accounts/'.length));
    accounts.set(`${issuer.name}:${sub}`, body);
  } else if (req.method === 'PUT' && path === '/__test/jwks') {
    start(issuer, body);
  } else {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(204).end();
}

function start(issuer, jwks) {
  // One store per issuer for the life of the process: a key rotation keeps clients and grants.
  issuer.adapter ??= createMemoryAdapter();
  const provider = new Provider(issuer.url, configuration(issuer.name, jwks, issuer.adapter));
  // Into the log the fixture shows when a test fails.
  for (const event of ['backchannel.error', 'server_error', 'grant.error']) {
    provider.on(event, (ctx, error) => console.error(`${issuer.name} ${event}:`, error ?? ctx));
  }
  issuer.handle = provider.callback();
}

function listen(spec) {
  const issuer = { name: spec.name, url: '', handle: null, adapter: undefined };
  const server = http.createServer((req, res) => {
    if (req.url.startsWith('/__test/')) {
      control(issuer, req, res).catch((error) => {
        res.writeHead(400, { 'content-type': 'text/plain' }).end(String(error));
      });
      return;
    }
    issuer.handle(req, res);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      issuer.url = `http://127.0.0.1:${server.address().port}`;
      start(issuer, spec.jwks);
      resolve(issuer);
    });
  });
}

const issuers = await Promise.all(config.issuers.map(listen));
process.stdout.write(
  `${JSON.stringify({ ready: Object.fromEntries(issuers.map((i) => [i.name, i.url])) })}\n`,
);
process.on('SIGTERM', () => process.exit(0));
