/* Search snippets from disk (see _ext/offline_search.py). Loaded by the search page
   only. Over HTTP it does nothing. From file:// it answers Sphinx's fetch of a page
   of the site with the page's text from _static/search_texts.js, loaded once. */
(function () {
  "use strict";
  if (location.protocol !== "file:") return;

  const root = new URL(document.documentElement.dataset.content_root || "./", location.href);
  let texts = null;

  function loadTexts() {
    if (!texts) {
      texts = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = new URL("_static/search_texts.js", root).href;
        script.onload = () => resolve(window.BOOK_SEARCH_TEXTS || {});
        script.onerror = reject;
        document.head.appendChild(script);
      });
    }
    return texts;
  }

  const siteFetch = window.fetch.bind(window);
  window.fetch = function (resource, options) {
    const url = new URL(typeof resource === "string" ? resource : resource.url, location.href);
    if (!url.href.startsWith(root.href)) return siteFetch(resource, options);
    const page = decodeURIComponent(url.pathname.slice(root.pathname.length));
    return loadTexts().then((all) =>
      page in all
        ? new Response(all[page], {headers: {"Content-Type": "text/html"}})
        : siteFetch(resource, options)
    );
  };
})();
