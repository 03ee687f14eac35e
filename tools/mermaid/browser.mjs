// Headless Chromium for the render checks: Debian's /usr/bin/chromium (or $CHROMIUM) driven by
// puppeteer-core, which never downloads a browser of its own. The page may load nothing from
// the network: every request other than the page itself and data: URLs is refused and
// recorded, so a check also proves that what it rendered needs no network.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import puppeteer from "puppeteer-core";

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

export async function withBrowser(work) {
  const profile = mkdtempSync(join(tmpdir(), "fsm-exec-chromium-"));
  const args = [
    "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--font-render-hinting=none",
  ];
  if (process.getuid && process.getuid() === 0) args.push("--no-sandbox");  // root: no sandbox
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM, headless: true, userDataDir: profile, args,
    protocolTimeout: 60_000,
  });
  try {
    return await work(browser);
  } finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

// A page that records console errors, uncaught exceptions and refused requests.
export async function guardedPage(browser, allow = () => false) {
  const page = await browser.newPage();
  const log = { errors: [], blocked: [] };
  page.on("console", (m) => { if (m.type() === "error") log.errors.push(m.text()); });
  page.on("pageerror", (e) => log.errors.push(String(e.message || e)));
  await page.setRequestInterception(true);
  page.on("request", (r) => {
    const url = r.url();
    if (url.startsWith("data:") || url === "about:blank" || allow(url)) r.continue();
    else { log.blocked.push(url); r.abort(); }
  });
  return { page, log };
}

// The command line of the page checks, `node X.mjs [--screenshot OUT.png] FILE.html`: opens
// FILE in a guarded page (it may load nothing but itself) at 1400x1000, runs
// `look(page)` on it, takes the screenshot if asked, and returns
// `{ file, seen, errors, blocked }` (`seen` is what `look` returned).
export async function openPage(argv, look) {
  argv = [...argv];
  let shot = null;
  if (argv[0] === "--screenshot") { shot = argv[1]; argv.splice(0, 2); }
  const url = pathToFileURL(argv[0]).href;
  return withBrowser(async (browser) => {
    const { page, log } = await guardedPage(browser, (u) => u === url);
    await page.setViewport({ width: 1400, height: 1000 });
    await page.goto(url, { waitUntil: "load" });
    const seen = await look(page);
    if (shot) await page.screenshot({ path: shot, fullPage: true });
    return { file: argv[0], seen, errors: log.errors, blocked: log.blocked };
  });
}
