// AIPM sign-in for browsers: Cognito managed login (or the local stand-in for it) with the OAuth 2.0
// authorization code flow and PKCE (S256), refresh tokens, and sign-out. An ES module with no dependencies,
// used by the AIPM web console and meant to be included by other frontends (docs/frontend-sign-in.md).
//
// Configuration (the "auth" object of the console's config.json, written by the CDK app and the local stack):
//   { "domain": "https://<prefix>.auth.<region>.amazoncognito.com",   // managed login's base URL
//     "clientId": "<the app client id>",
//     "redirectUri": "https://console.example.com/" }                 // optional: default <page origin>/
// The redirect URI must be one of the app client's callback URLs and sign-out URLs (Cognito matches them
// exactly). Endpoints (Cognito developer guide, "User pool endpoints and managed login reference"):
// <domain>/oauth2/authorize, /oauth2/token, /oauth2/revoke, /logout.
//
// Tokens stay in this tab: sessionStorage (gone when the tab closes), never in localStorage, a cookie or a
// URL. The ID token is what the API's Cognito authorizer checks: send it as "Authorization: Bearer <token>".

const PENDING_KEY = "aipm.auth.pending";  // {state, verifier} while the browser is at the sign-in page
const REFRESH_MARGIN_S = 60;

function base64url(bytes) {
  let text = "";
  for (const b of new Uint8Array(bytes)) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(byteCount) {
  const bytes = new Uint8Array(byteCount);
  crypto.getRandomValues(bytes);
  return base64url(bytes);
}

/** The claims of a JWT, not verified (the API verifies; this only reads `exp` and who signed in). */
export function jwtClaims(token) {
  try {
    const part = String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(Array.from(atob(part), (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""));
    return JSON.parse(json);
  } catch (err) {
    return {};
  }
}

export class SignInError extends Error {}

export class AipmAuth {
  /**
   * @param {{domain: string, clientId: string, redirectUri?: string, scope?: string}} config
   */
  constructor(config) {
    if (!config || !config.domain || !config.clientId) {
      throw new SignInError("sign-in is not configured: the config needs auth.domain and auth.clientId");
    }
    this.domain = String(config.domain).replace(/\/+$/, "");
    this.clientId = String(config.clientId);
    this.redirectUri = config.redirectUri || window.location.origin + "/";
    this.scope = config.scope || "openid email profile";
    this.storageKey = "aipm.auth." + this.clientId;
    this._refreshing = null;
  }

  /** An AipmAuth from a config.json (its "auth" object), or null when the file has none. */
  static async fromConfig(url = "config.json") {
    const resp = await fetch(url, { cache: "no-store" });
    if (!resp.ok) throw new SignInError("cannot read " + url + " (" + resp.status + ")");
    const config = await resp.json();
    return config && config.auth ? new AipmAuth(config.auth) : null;
  }

  _load() {
    try {
      return JSON.parse(sessionStorage.getItem(this.storageKey) || "null");
    } catch (err) {
      return null;
    }
  }

  _save(tokens) {
    sessionStorage.setItem(this.storageKey, JSON.stringify(tokens));
  }

  /** Whether someone is signed in in this tab (they may still need a refresh). */
  signedIn() {
    const tokens = this._load();
    return Boolean(tokens && tokens.idToken && tokens.refreshToken);
  }

  /** Who is signed in: the ID token's claims ({email, sub, "cognito:username", ...}), or null. */
  user() {
    const tokens = this._load();
    return tokens && tokens.idToken ? jwtClaims(tokens.idToken) : null;
  }

  /** Go to the sign-in page. The browser comes back to redirectUri with ?code&state (see handleRedirect). */
  async signIn() {
    const verifier = randomString(32);
    const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    const state = randomString(16);
    sessionStorage.setItem(PENDING_KEY, JSON.stringify({ state, verifier }));
    const query = new URLSearchParams({
      response_type: "code", client_id: this.clientId, redirect_uri: this.redirectUri, scope: this.scope,
      state, code_challenge: challenge, code_challenge_method: "S256",
    });
    window.location.assign(this.domain + "/oauth2/authorize?" + query.toString());
  }

  /**
   * On the page the sign-in redirected to: exchange the code for tokens and take ?code&state out of the
   * address bar. Returns true if a sign-in completed, false if this is not a redirect. Throws SignInError
   * for a refused or forged answer.
   */
  async handleRedirect() {
    const url = new URL(window.location.href);
    const code = url.searchParams.get("code");
    const state = url.searchParams.get("state");
    const error = url.searchParams.get("error");
    if (!code && !error) return false;
    for (const name of ["code", "state", "error", "error_description"]) url.searchParams.delete(name);
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
    const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || "null");
    sessionStorage.removeItem(PENDING_KEY);
    if (error) throw new SignInError("the sign-in failed: " + (url.searchParams.get("error_description") || error));
    if (!pending || pending.state !== state) throw new SignInError("this sign-in answer does not belong to a sign-in started here");
    const tokens = await this._token({
      grant_type: "authorization_code", client_id: this.clientId, code, redirect_uri: this.redirectUri,
      code_verifier: pending.verifier,
    });
    this._save(tokens);
    return true;
  }

  async _token(fields, keepRefreshToken) {
    let resp;
    try {
      resp = await fetch(this.domain + "/oauth2/token", {
        method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(fields).toString(), credentials: "omit", cache: "no-store",
      });
    } catch (err) {
      throw new SignInError("cannot reach the sign-in at " + this.domain);
    }
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok || !body.id_token) {
      throw new SignInError("the sign-in refused: " + (body.error_description || body.error || resp.status));
    }
    return {
      idToken: body.id_token,
      accessToken: body.access_token || "",
      refreshToken: body.refresh_token || keepRefreshToken || "",
    };
  }

  /**
   * A valid ID token, refreshed with the refresh token when it expires within a minute (or when `force`),
   * or null when nobody is signed in or the sign-in has ended (refresh refused).
   */
  async idToken(force = false) {
    const tokens = this._load();
    if (!tokens || !tokens.idToken) return null;
    const claims = jwtClaims(tokens.idToken);
    const margin = Math.min(REFRESH_MARGIN_S, ((claims.exp || 0) - (claims.iat || 0)) / 4);
    if (!force && Date.now() / 1000 < (claims.exp || 0) - margin) return tokens.idToken;
    if (!this._refreshing) {
      this._refreshing = this._token(
        { grant_type: "refresh_token", client_id: this.clientId, refresh_token: tokens.refreshToken },
        tokens.refreshToken,
      ).then((fresh) => { this._save(fresh); return fresh.idToken; })
        .catch(() => { sessionStorage.removeItem(this.storageKey); return null; })
        .finally(() => { this._refreshing = null; });
    }
    return this._refreshing;
  }

  /** {Authorization: "Bearer <ID token>"}, or {} when nobody is signed in. */
  async authHeaders(force = false) {
    const token = await this.idToken(force);
    return token ? { Authorization: "Bearer " + token } : {};
  }

  /**
   * Make every fetch() to `apiBaseUrl` carry the ID token, and retry once with a refreshed one after a 401.
   * For pages whose code calls fetch() itself (such as the AIPM frontend's sendJson).
   */
  authorizeFetch(apiBaseUrl) {
    const base = String(apiBaseUrl).replace(/\/+$/, "");
    const original = window.fetch.bind(window);
    const auth = this;
    window.fetch = async function (input, init) {
      const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
      if (!base || !(url === base || url.startsWith(base + "/") || url.startsWith(base + "?"))) {
        return original(input, init);
      }
      const send = async (force) => {
        const headers = new Headers((init && init.headers) || (input instanceof Request ? input.headers : undefined));
        const extra = await auth.authHeaders(force);
        if (extra.Authorization) headers.set("Authorization", extra.Authorization);
        return original(input, { ...(init || {}), headers });
      };
      const resp = await send(false);
      const replayable = !(input instanceof Request) && (!init || init.body === undefined || typeof init.body === "string");
      return resp.status === 401 && replayable && auth.signedIn() ? send(true) : resp;
    };
  }

  /** Sign out: revoke the refresh token, forget the tokens, end the managed-login session. */
  async signOut() {
    const tokens = this._load();
    sessionStorage.removeItem(this.storageKey);
    if (tokens && tokens.refreshToken) {
      try {
        await fetch(this.domain + "/oauth2/revoke", {
          method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ token: tokens.refreshToken, client_id: this.clientId }).toString(),
          credentials: "omit", cache: "no-store",
        });
      } catch (err) {
        // The tokens are forgotten here either way; the refresh token then ends on its own.
      }
    }
    const query = new URLSearchParams({ client_id: this.clientId, logout_uri: this.redirectUri });
    window.location.assign(this.domain + "/logout?" + query.toString());
  }
}
