/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** Base URL of the gateway, when it is not the origin the app is served from. */
  readonly VITE_PRESENCE_API_URL?: string;
}
