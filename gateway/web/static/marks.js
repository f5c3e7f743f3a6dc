/* How riders and quadrants are told apart on the page, and how the matrix's axes behave: pure
   functions (no page state), shared by app.js and checked by the browser tests. */
"use strict";

// Seven hues away from the quadrants' (green, yellow, red, blue), each dark then light: white
// initials read on all fourteen, each stands out from every quadrant's tint (3:1), and a hue's
// dark and light differ by 3:1, so riders of the same shape are told apart by lightness alone.
// gateway/results/marks.py has the same lists and rule; the page takes a session's marks from it.
const RIDER_COLOURS = ["#3c1b6b", "#5a1035", "#03352f", "#243036", "#3d2a24", "#222276", "#4d1556",
  "#9768d9", "#de4390", "#08907e", "#638595", "#a37566", "#7575d7", "#c14ed3"];
const RIDER_SHAPES = ["circle", "square", "triangle", "diamond", "hexagon", "plus", "triangle-down"];

// Rider ``i``'s colour and shape: the first fourteen differ in shape or by 3:1 in contrast; after
// that the shape moves on, so that no two riders share colour and shape before the 98th.
function markFor(i) {
  const n = RIDER_COLOURS.length;
  return { colour: RIDER_COLOURS[i % n], shape: RIDER_SHAPES[(i + Math.floor(i / n)) % RIDER_SHAPES.length] };
}

const QUADRANT_WORDS = {
  efficient: { icon: "✔", meaning: "faster with less power" },
  strong: { icon: "▲", meaning: "faster with more power" },
  costly: { icon: "✖", meaning: "slower with more power" },
  easy: { icon: "▼", meaning: "slower with less power" },
  neutral: { icon: "≈", meaning: "within half a standard deviation of the squad's time or power on this segment: no quadrant" },
};
// The neutral band of the debrief (gateway/debrief/fatigue.py NEUTRAL_Z): |z| below 0.5 on either
// axis is the squad's middle, and no quadrant's word is given ("Strong" for a time z of -0.19 misled).
const NEUTRAL_Z = 0.5;

function nearAverage(x, y) {
  return x !== null && x !== undefined && y !== null && y !== undefined && (Math.abs(x) < NEUTRAL_Z || Math.abs(y) < NEUTRAL_Z);
}

// A duration as m:ss.s (h:mm:ss.s from an hour), as coaches write lap times (results/export.py's clock).
function mmss(v) {
  if (v === null || v === undefined) return "–";
  const minutes = Math.floor(v / 60), rest = v - 60 * minutes;
  const sec = rest.toFixed(1).padStart(4, "0");
  if (minutes >= 60) return `${Math.floor(minutes / 60)}:${String(minutes % 60).padStart(2, "0")}:${sec}`;
  return `${minutes}:${sec}`;
}

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
    shapePoints(shape, c, c, r).forEach(([x, y], i) => ctx[i ? "lineTo" : "moveTo"](x, y));
    ctx.closePath();
  }
}

// The corners of the polygon shapes around (cx, cy), y down (gateway/debrief/charts.py: y up).
function shapePoints(shape, cx, cy, r) {
  if (shape === "plus") {
    const a = r * 0.95, b = r * 0.42;  // arms wide enough for two letters in the middle
    return [[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]]
      .map(([x, y]) => [cx + x, cy + y]);
  }
  const n = { triangle: 3, "triangle-down": 3, diamond: 4, hexagon: 6 }[shape];
  const down = shape === "triangle-down";
  const turn = shape === "triangle" ? -Math.PI / 2 : down ? Math.PI / 2 : shape === "diamond" ? 0 : Math.PI / 6;
  const rr = n === 3 ? r * 1.2 : r;
  const shift = n === 3 ? (down ? -r * 0.22 : r * 0.22) : 0;  // a triangle's wide part near the middle
  return Array.from({ length: n }, (_, i) => {
    const a = turn + (2 * Math.PI * i) / n;
    return [cx + rr * Math.cos(a), cy + rr * Math.sin(a) + shift];
  });
}

// Where the initials sit in a shape and how large they may be (a triangle's letters lower and smaller).
function initialsBox(shape, text, size) {
  const small = text.length > 2 || shape === "triangle" || shape === "triangle-down" || shape === "diamond";
  const dy = shape === "triangle" ? size * 0.12 : shape === "triangle-down" ? -size * 0.1 : 0.5;
  return { px: Math.round(size * (small ? 0.32 : 0.42)), dy };
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
  const box = initialsBox(shape, text, size);
  ctx.font = `bold ${box.px}px system-ui, sans-serif`;
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(text, size / 2, size / 2 + box.dy);
  return canvas;
}

// z-score axes: centred on 0, symmetric, only growing (a point never jumps because another
// arrived); ``held`` is the extent so far, at least 2 (a z-score of 2 is already unusual).
// Whole numbers (ticks at -2, -1, 0, 1, 2), at most Z_CAP: a modified z-score of 7 would squeeze
// every other point into the middle; a point beyond is drawn at the edge with its value (pinInside).
const Z_CAP = 4;

function growExtent(held, values) {
  const far = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const wanted = Math.ceil(far * 1.15);
  return Math.min(Z_CAP, Math.max(held || 2, wanted, 2));
}

// A point outside the axes moves to just inside their edge and keeps its value to be written beside it.
function pinInside(p, extent) {
  const edge = (v, e) => Math.sign(v) * (e - 0.12);
  if (Math.abs(p.x) > extent.x) { p.beyondX = p.x; p.x = edge(p.x, extent.x); }
  if (Math.abs(p.y) > extent.y) { p.beyondY = p.y; p.y = edge(p.y, extent.y); }
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
