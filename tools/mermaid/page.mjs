// Open an HTML file in headless Chromium and say what a person would see.
//
//   node page.mjs [--screenshot OUT.png] FILE.html
//
// Prints JSON: title, console errors and uncaught exceptions, refused requests (the page may
// load nothing but itself), the sections (id, heading, size, how many SVGs and tables each
// holds), and the page size. The screenshot is of the whole page.
import { openPage } from "./browser.mjs";

const { file, seen, errors, blocked } = await openPage(process.argv.slice(2), (page) =>
  page.evaluate(() => ({
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
  })));
process.stdout.write(JSON.stringify({ file, ...seen, errors, blocked }, null, 1) + "\n");
