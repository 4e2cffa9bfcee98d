// Starts Swagger UI on the page served by controller/api/docs.py. A file of its own,
// not an inline script, so that the page's Content-Security-Policy can allow
// scripts from this server only.
"use strict";

window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    deepLinking: true,
    // No online validator badge: it would send the document's URL to validator.swagger.io.
    validatorUrl: null,
  });
});
