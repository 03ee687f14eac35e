// Open an HTML file in headless Chromium and say what a person would see.
//
//   node page.mjs [--screenshot OUT.png] FILE.html
//
// Prints JSON: title, console errors and uncaught exceptions, refused requests (the page may
// load nothing but itself), the sections (id, heading, size, how many SVGs and tables each
// holds), and the page size. The screenshot is of the whole page.
import { pathToFileURL } from "node:url";
import { guardedPage, withBrowser } from "./browser.mjs";

const argv = process.argv.slice(2);
let shot = null;
if (argv[0] === "--screenshot") { shot = argv[1]; argv.splice(0, 2); }
const url = pathToFileURL(argv[0]).href;

const result = await withBrowser(async (browser) => {
  const { page, log } = await guardedPage(browser, (u) => u === url);
  await page.setViewport({ width: 1400, height: 1000 });
  await page.goto(url, { waitUntil: "load" });
  const seen = await page.evaluate(() => ({
    title: document.title,
    size: { w: document.documentElement.scrollWidth, h: document.documentElement.scrollHeight },
    sections: [...document.querySelectorAll("section[id]")].map((s) => {
      const r = s.getBoundingClientRect();
      return { id: s.id, heading: (s.querySelector("h2") || {}).textContent || null,
               w: r.width, h: r.height, svgs: s.querySelectorAll("svg").length,
               tables: s.querySelectorAll("table").length,
               svgSizes: [...s.querySelectorAll("svg")].map((g) => {
                 const b = g.getBoundingClientRect(); return [Math.round(b.width), Math.round(b.height)];
               }) };
    }),
    banner: !!document.querySelector(".banner#problem"),
  }));
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  return { file: argv[0], ...seen, errors: log.errors, blocked: log.blocked };
});
process.stdout.write(JSON.stringify(result, null, 1) + "\n");
