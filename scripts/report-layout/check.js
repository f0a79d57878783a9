// Opens a report.html in headless Chromium (through playwright-core) at a desktop's 1400 px, a
// laptop's 1024 px, a phone's 420 px and a small phone's 360 px, and checks what a reader would
// see: the page does not scroll sideways, no table runs past the screen's edge (at 1024 px a wide
// table may scroll inside its own box; at 1400 px it must fit), and no chart text is displayed
// under 11 px. Saves a full-page screenshot at each width. Exits 1 naming what failed.
//   node check.js REPORT_HTML OUT_DIR
const { chromium } = require('playwright-core');
const path = require('path');

(async () => {
  const [file, out] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  let failures = [];
  for (const width of [1400, 1024, 420, 360]) {
    const page = await browser.newPage({ viewport: { width, height: 900 } });
    await page.goto('file://' + path.resolve(file));
    const seen = await page.evaluate(() => {
      const viewport = window.innerWidth;
      let minFont = Infinity, minText = '', charts = 0;
      for (const svg of document.querySelectorAll('svg')) {
        const shown = svg.getBoundingClientRect().width;
        if (shown === 0) continue; // the other layout's copy, hidden at this width
        charts += 1;
        const scale = shown / svg.viewBox.baseVal.width;
        for (const t of svg.querySelectorAll('text')) {
          const px = parseFloat(t.getAttribute('font-size')) * scale;
          if (px < minFont) { minFont = px; minText = t.textContent.trim(); }
        }
      }
      // A table is past the edge when what shows of it is: its own box, or the box that scrolls
      // it sideways. On a desktop (1400 px) the table itself must fit, nothing left to scroll to.
      const tables = [...document.querySelectorAll('table')]
        .filter(t => {
          const box = viewport >= 1400 ? t : (t.closest('.scroll') || t);
          return box.getBoundingClientRect().right > viewport + 1;
        })
        .map(t => t.rows[0].cells[0].textContent);
      return { viewport, scrollWidth: document.documentElement.scrollWidth, minFont, minText, charts, tables };
    });
    await page.screenshot({ path: path.join(out, `report-${width}.png`), fullPage: true });
    await page.close();
    console.log(`${width} px: page ${seen.scrollWidth} px wide, ${seen.charts} charts shown, smallest chart text ${seen.minFont.toFixed(1)} px ('${seen.minText}'), tables past the edge: ${seen.tables.length}`);
    if (seen.scrollWidth > seen.viewport) failures.push(`${width} px: the page scrolls sideways (${seen.scrollWidth} px)`);
    if (seen.tables.length) failures.push(`${width} px: tables past the edge: ${seen.tables.join(', ')}`);
    if (seen.charts === 0) failures.push(`${width} px: no chart shown`);
    if (seen.minFont < 11) failures.push(`${width} px: chart text '${seen.minText}' shown at ${seen.minFont.toFixed(1)} px`);
  }
  await browser.close();
  if (failures.length) {
    console.error('report layout check failed:\n  ' + failures.join('\n  '));
    process.exit(1);
  }
})().catch(e => { console.error(e); process.exit(1); });
