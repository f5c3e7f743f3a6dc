/* How riders and quadrants are told apart on the page, and how the matrix's axes behave: pure
   functions (no page state), shared by app.js and checked by the browser tests. */
"use strict";

// Dark colours away from the quadrants' hues (green, yellow, red, blue): a rider's point never
// melts into a quadrant's tint, and white initials read on every one of them.
const RIDER_COLOURS = ["#6a1b9a", "#ad1457", "#00695c", "#263238", "#6d4c41", "#4527a0", "#546e7a"];
// Seven colours and five shapes cycle together: the first 35 riders all differ in the pair.
const RIDER_SHAPES = ["circle", "square", "triangle", "diamond", "hexagon"];

const QUADRANT_WORDS = {
  efficient: { icon: "✔", meaning: "faster with less power" },
  strong: { icon: "▲", meaning: "faster with more power" },
  costly: { icon: "✖", meaning: "slower with more power" },
  easy: { icon: "▼", meaning: "slower with less power" },
};

function luminance(hex) {
  const c = hex.replace("#", "");
  const [r, g, b] = [0, 2, 4].map(i => parseInt(c.slice(i, i + 2), 16) / 255)
    .map(v => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

// WCAG contrast ratio of two #rrggbb colours.
function contrast(a, b) {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

// A colour at ``alpha`` over white, as #rrggbb (the quadrant tints as the eye sees them).
function overWhite(hex, alpha) {
  const c = hex.replace("#", "");
  return "#" + [0, 2, 4].map(i => Math.round(255 - alpha * (255 - parseInt(c.slice(i, i + 2), 16)))
    .toString(16).padStart(2, "0")).join("");
}

// Up to three letters a coach recognises: "Lea Müller" -> "LM"; clashes get a digit.
function initialsFor(riders) {
  const out = {}, seen = {};
  for (const r of riders) {
    const words = String(r.name || r.id).trim().split(/\s+/);
    let mark = words.length > 1 ? words[0][0] + words[words.length - 1][0] : words[0].slice(0, 2);
    mark = mark.toUpperCase();
    seen[mark] = (seen[mark] || 0) + 1;
    out[r.id] = seen[mark] > 1 ? mark.slice(0, 2) + seen[mark] : mark;
  }
  return out;
}

function shapePath(ctx, shape, c, r) {
  ctx.beginPath();
  if (shape === "circle") ctx.arc(c, c, r, 0, 2 * Math.PI);
  else if (shape === "square") ctx.rect(c - r * 0.88, c - r * 0.88, r * 1.76, r * 1.76);
  else {
    const n = { triangle: 3, diamond: 4, hexagon: 6 }[shape];
    const turn = shape === "triangle" ? -Math.PI / 2 : shape === "diamond" ? 0 : Math.PI / 6;
    const rr = shape === "triangle" ? r * 1.15 : r;
    for (let i = 0; i < n; i++) {
      const a = turn + (2 * Math.PI * i) / n;
      ctx[i ? "lineTo" : "moveTo"](c + rr * Math.cos(a), c + rr * Math.sin(a) + (shape === "triangle" ? r * 0.2 : 0));
    }
    ctx.closePath();
  }
}

// A rider's point: their shape in their colour with their initials in white, as a canvas
// (Chart.js draws it as the point style) and as an image for the legend. ``hollow``: the same
// shape as an outline with the initials in the rider's colour (power heard for part of the
// segment only: told by the fill, not by a colour).
function riderMark(colour, shape, text, size, faded, hollow) {
  const canvas = document.createElement("canvas");
  const scale = window.devicePixelRatio || 1;
  canvas.width = canvas.height = Math.round(size * scale);
  canvas.style.width = canvas.style.height = `${size}px`;
  const ctx = canvas.getContext("2d");
  ctx.scale(scale, scale);
  ctx.globalAlpha = faded ? 0.3 : 1;
  shapePath(ctx, shape, size / 2, size / 2 - (hollow ? 2.5 : 1.5));
  ctx.fillStyle = hollow ? "#ffffff" : colour;
  ctx.fill();
  ctx.lineWidth = hollow ? 3.5 : 1.5;
  ctx.strokeStyle = hollow ? colour : "#ffffff";
  ctx.stroke();
  ctx.fillStyle = hollow ? colour : "#ffffff";
  ctx.font = `bold ${text.length > 2 ? Math.round(size * 0.34) : Math.round(size * 0.42)}px system-ui, sans-serif`;
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(text, size / 2, size / 2 + (shape === "triangle" ? size * 0.1 : 0.5));
  return canvas;
}

// z-score axes: centred on 0, symmetric, only growing (a point never jumps because another
// arrived); ``held`` is the extent so far, at least 2 (a z-score of 2 is already unusual).
function growExtent(held, values) {
  const far = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const wanted = Math.ceil((far * 1.15) * 2) / 2;
  return Math.max(held || 2, wanted, 2);
}

// Where a quadrant's label may go, in pixels: the corners of the part of the quadrant on screen
// (``area``: left, right, top, bottom, and which corner is the chart's outer one), outer corner
// first; the first whose box holds no point wins. None fits: null, and the label is left out.
function placeLabel(area, size, points, pad) {
  const xs = area.outerX === "left" ? ["left", "right"] : ["right", "left"];
  const ys = area.outerY === "top" ? ["top", "bottom"] : ["bottom", "top"];
  for (const yEdge of ys) {
    for (const xEdge of xs) {
      const left = xEdge === "left" ? area.left + pad : area.right - pad - size.w;
      const top = yEdge === "top" ? area.top + pad : area.bottom - pad - size.h;
      if (left < area.left || top < area.top || left + size.w > area.right || top + size.h > area.bottom) continue;
      const box = { left: left - 8, right: left + size.w + 8, top: top - 8, bottom: top + size.h + 8 };
      if (!points.some(p => p.x >= box.left && p.x <= box.right && p.y >= box.top && p.y <= box.bottom)) {
        return { x: left, y: top };
      }
    }
  }
  return null;
}

function quadrantOfScores(x, y) {
  if (x === null || y === null || x === undefined || y === undefined || x === 0 || y === 0) return "";
  return x < 0 ? (y < 0 ? "efficient" : "strong") : (y > 0 ? "costly" : "easy");
}
