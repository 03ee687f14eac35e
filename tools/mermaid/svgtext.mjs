// Open an HTML report in headless Chromium and measure the text of every chart in it.
//
//   node svgtext.mjs [--screenshot OUT.png] FILE.html
//
// Prints JSON: errors and refused requests (as page.mjs), the page width, and for each
// section's inline SVG (the report's matplotlib charts) its box and every text drawn in it
// ({text, box} in CSS pixels, only texts that are drawn: width > 0), plus "overlaps": pairs
// of texts in one chart whose boxes intersect by more than a pixel each way, and "outside":
// texts that stick out of their chart. Tick labels, axis labels, titles and legends
// included; the caller judges.
import { openPage } from "./browser.mjs";

const { file, seen, errors, blocked } = await openPage(process.argv.slice(2), async (page) => {
  const charts = await page.evaluate(() => {
    const box = (r) => ({ x: r.x, y: r.y + window.scrollY, w: r.width, h: r.height });
    const out = [];
    for (const section of document.querySelectorAll("section[id]")) {
      if (section.id === "lifecycle") continue;
      // Only the charts matplotlib drew (Graphviz's lifecycle has its own checks).
      section.querySelectorAll(":scope > svg").forEach((svg, n) => {
        const frame = box(svg.getBoundingClientRect());
        const texts = [...svg.querySelectorAll("text")]
          .map((t) => ({ text: t.textContent.trim(), box: box(t.getBoundingClientRect()) }))
          .filter((t) => t.text && t.box.w > 0);
        const hit = (a, b) => Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x) > 1 &&
                              Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y) > 1;
        const overlaps = [];
        for (let i = 0; i < texts.length; i++)
          for (let j = i + 1; j < texts.length; j++)
            if (hit(texts[i].box, texts[j].box)) overlaps.push([texts[i].text, texts[j].text]);
        const outside = texts.filter((t) => t.box.x < frame.x - 1 || t.box.y < frame.y - 1 ||
          t.box.x + t.box.w > frame.x + frame.w + 1 || t.box.y + t.box.h > frame.y + frame.h + 1)
          .map((t) => t.text);
        out.push({ section: section.id, n, box: frame, texts, overlaps, outside });
      });
    }
    return out;
  });
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  return { width, charts };
});
process.stdout.write(JSON.stringify({ file, ...seen, errors, blocked }) + "\n");
