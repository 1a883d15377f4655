/* The API reference page: Swagger UI (swagger-ui-dist from npm, served by the platform)
 * over the platform's own OpenAPI document. */
/* global SwaggerUIBundle */
window.addEventListener("DOMContentLoaded", () => {
  SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#reference",
    deepLinking: true,
    // "Try it out" sends real requests with the reader's own session or API key.
    tryItOutEnabled: false,
  });
});
