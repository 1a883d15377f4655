// ESLint (flat config) for the front end: widget_static/ (browser ES modules, and the
// classic-script loader embed.js) and the Node scripts of the JavaScript client tests.
import js from "@eslint/js";
import globals from "globals";

export default [
  { ignores: ["node_modules/", ".venv/", "test-artifacts/", "bench/"] },
  js.configs.recommended,
  {
    files: ["widget_static/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      globals: { ...globals.browser, io: "readonly" },
    },
    rules: {
      "no-unused-vars": ["error", { args: "none" }],
      eqeqeq: ["error", "smart"],
      "no-implicit-globals": "error",
    },
  },
  {
    // The loader runs on customers' pages as a classic script, in one function.
    files: ["widget_static/embed.js"],
    languageOptions: {
      sourceType: "script",
      ecmaVersion: 5,
      globals: { ...globals.browser, Uint8Array: "readonly" },
    },
    rules: {
      // Storage may throw (privacy modes); nothing to do then.
      "no-empty": ["error", { allowEmptyCatch: true }],
      "no-unused-vars": ["error", { caughtErrors: "none" }],
    },
  },
  {
    files: ["eslint.config.js", "tests/**/*.mjs", "tests/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.node } },
  },
];
