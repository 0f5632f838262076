/* The book's one script (Jupyter Book adds every .js file in _static/ to every page).
   Four mends; tests/test_site_interactions.py and test_site_browser.py check them.

   1. Menu buttons. The page has two "primary" toggles (the table of contents) and two
      "secondary" ones (the page's contents): the theme's header copy, hidden, and the
      article header's, visible. pydata-sphinx-theme and sphinx-book-theme bind their
      click handlers with querySelector, that is to the first (hidden) copy only, so a
      tap on the visible button did nothing but show its tooltip. A click on any other
      copy is passed on to the first one.

   2. Solutions. A solution's title holds a link to its exercise, and the whole title
      opens and shuts the solution. sphinx-togglebutton's handler finds no button for
      a click on that link and throws ("button is not defined"), leaving the solution
      shut. A click on the title's link now works the title's toggle button instead.

   3. Wide equations. On a phone a display equation wider than the column scrolls
      sideways inside its box; a keyboard reader can scroll it only if it can take
      the focus, so each one that scrolls gets tabindex="0" (axe-core's
      scrollable-region-focusable). Checked once MathJax has typeset the page, and
      again when the window changes size.

   4. Drawers that stay open. On a phone the menus are modal dialogs. A tap on an
      entry that leads to a section of this page scrolled the page behind the
      drawer and left the drawer over most of the screen. The drawer now closes
      first, and the jump follows once the theme has handed its contents back (the
      dialog's "close" event, where the theme also returns the focus to the menu
      button). */
(function () {
  "use strict";

  function forwardToBoundToggle(event) {
    for (const kind of ["primary-toggle", "secondary-toggle"]) {
      const clicked = event.target.closest("." + kind);
      if (!clicked) continue;
      const bound = document.querySelector("." + kind);
      if (bound && bound !== clicked) {
        event.preventDefault();
        event.stopImmediatePropagation();
        bound.click();
      }
      return;
    }
  }

  function toggleSolutionFromTitleLink(event) {
    const link = event.target.closest(".toggle > .admonition-title a");
    if (!link) return;
    const button = link.closest(".admonition-title").querySelector(".toggle-button");
    if (!button) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    button.click();
  }

  function focusWideEquations() {
    for (const box of document.querySelectorAll('mjx-container[display="true"]')) {
      if (box.scrollWidth > box.clientWidth + 1) box.setAttribute("tabindex", "0");
      else box.removeAttribute("tabindex");
    }
  }

  function jumpTo(hash) {
    const id = decodeURIComponent(hash.slice(1));
    const target = id ? document.getElementById(id) : null;
    if (hash && window.location.hash !== hash) window.location.hash = hash; // scrolls
    else if (target) target.scrollIntoView();
    else window.scrollTo(0, 0);
  }

  function closeDrawerOnJump(event) {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
    const link = event.target.closest("dialog[open] a[href]");
    if (!link || !link.getAttribute("href").includes("#")) return;
    const here = window.location;
    if (link.origin !== here.origin || link.pathname !== here.pathname) return;
    const drawer = link.closest("dialog");
    event.preventDefault();
    drawer.addEventListener("close", () => jumpTo(link.hash), { once: true });
    drawer.close();
  }

  // Capture phase on the document: before the theme's own handlers see the click.
  document.addEventListener("click", forwardToBoundToggle, true);
  document.addEventListener("click", toggleSolutionFromTitleLink, true);
  // Bubble phase: after the theme's handlers, which leave such a link's click alone.
  document.addEventListener("click", closeDrawerOnJump);

  window.addEventListener("load", () => {
    const typeset = window.MathJax && MathJax.startup && MathJax.startup.promise;
    if (!typeset) return;
    typeset.then(focusWideEquations);
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(focusWideEquations, 200);
    });
  });
})();
