/*
 * flame.c - the flame graph page (see flame.h).
 *
 * The stacks are merged into a tree here (a node per function under its
 * caller), written as JSON into the page, and the page's script lays the
 * tree out and draws it as positioned elements, so that the browser's own
 * text rendering and events do the rest and the result can be inspected as
 * a document. The JSON is made safe inside <script> by writing '<' as
 * \u003c: a function name cannot close the element.
 */
#include "flame.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "hash.h"
#include "oaindex.h"
#include "xalloc.h"

struct fnode {
	const char *name, *file;
	uint32_t line;
	uint32_t parent, child, sibling; /* indexes; 0 = none (0 is the root) */
	uint64_t v, b, n;                /* the value, its bytes, its count */
	uint64_t old;                    /* the old snapshot's value (differential) */
};

struct ftree {
	struct fnode *node;
	size_t n, cap;
	struct oaindex idx; /* (parent, name) -> node */
};

struct fkey {
	uint32_t parent;
	const char *name;
};

static bool node_eq(const void *ctx, uintptr_t val, const void *key)
{
	const struct ftree *t = ctx;
	const struct fkey *k = key;
	return t->node[val].parent == k->parent && strcmp(t->node[val].name, k->name) == 0;
}

static uint32_t child_of(struct ftree *t, uint32_t parent, const struct frame_info *f)
{
	struct fkey k = {parent, f->function};
	uint64_t h = hash_str(hash_mix(parent), f->function);
	uintptr_t i = oaindex_find(&t->idx, h, node_eq, t, &k);

	if (i != OAINDEX_NONE)
		return (uint32_t)i;
	if (t->n == t->cap) {
		t->cap *= 2;
		t->node = xreallocarray(t->node, t->cap, sizeof(*t->node));
	}
	struct fnode *c = &t->node[t->n];
	memset(c, 0, sizeof(*c));
	c->name = f->function;
	c->file = f->filename;
	c->line = f->lineno;
	c->parent = parent;
	c->sibling = t->node[parent].child;
	t->node[parent].child = (uint32_t)t->n;
	oaindex_insert(&t->idx, h, t->n);
	return (uint32_t)t->n++;
}

static const char *const value_names[] = {"size", "peak", "allocations", "temporary"};

int flame_value_parse(const char *s)
{
	for (int i = 0; s != NULL && i < 4; i++)
		if (strcmp(s, value_names[i]) == 0)
			return i;
	return -1;
}

const char *flame_value_name(enum flame_value v)
{
	return value_names[v];
}

static void trace_values(const struct snapshot_trace *t, enum flame_value v, uint64_t out[3])
{
	switch (v) {
	case FLAME_PEAK:
		out[0] = out[1] = t->peak_size, out[2] = t->peak_count;
		break;
	case FLAME_ALLOCATIONS:
		out[0] = out[2] = t->allocations, out[1] = t->allocated;
		break;
	case FLAME_TEMPORARY:
		out[0] = out[2] = t->temporary, out[1] = 0;
		break;
	case FLAME_SIZE:
	default:
		out[0] = out[1] = t->size, out[2] = t->count;
		break;
	}
}

/* Adds the snapshot's stacks to the tree: into v, b and n, or (old) into old. */
static void add_stacks(struct ftree *t, const struct snapshot *s, enum flame_value v, bool old)
{
	static const struct frame_info unknown = {"<unknown>", 0,    "<unknown>",
	                                          "<unknown>", NULL, NULL};

	for (size_t i = 0; i < s->ntraces; i++) {
		const struct snapshot_trace *tr = &s->traces[i];
		uint64_t val[3];
		trace_values(tr, v, val);
		if (val[0] == 0)
			continue;
		uint32_t at = 0;
		for (uint32_t j = tr->nframes + (tr->nframes == 0); j-- > 0;) {
			struct fnode *nd = &t->node[at];
			if (old) {
				nd->old += val[0];
			} else {
				nd->v += val[0];
				nd->b += val[1];
				nd->n += val[2];
			}
			at = child_of(t, at,
			              tr->nframes == 0 ? &unknown : &s->frames[tr->frames[j]]);
		}
		struct fnode *leaf = &t->node[at];
		if (old) {
			leaf->old += val[0];
		} else {
			leaf->v += val[0];
			leaf->b += val[1];
			leaf->n += val[2];
		}
	}
}

static int by_value(const void *a, const void *b, void *ctx)
{
	const struct fnode *x = &((const struct ftree *)ctx)->node[*(const uint32_t *)a];
	const struct fnode *y = &((const struct ftree *)ctx)->node[*(const uint32_t *)b];
	if (x->v != y->v)
		return x->v > y->v ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* A stable sort of a few children (insertion; glibc's qsort_r is not in C11). */
static void sort_children(uint32_t *c, size_t n, const struct ftree *t)
{
	for (size_t i = 1; i < n; i++) {
		uint32_t x = c[i];
		size_t j = i;
		while (j > 0 && by_value(&x, &c[j - 1], (void *)(uintptr_t)t) < 0) {
			c[j] = c[j - 1];
			j--;
		}
		c[j] = x;
	}
}

static cJSON *node_json(const struct ftree *t, uint32_t i, bool diff)
{
	const struct fnode *nd = &t->node[i];
	cJSON *o = cJSON_CreateObject();
	char where[64];

	cJSON_AddStringToObject(o, "n", nd->name);
	if (nd->line > 0) {
		cJSON_AddStringToObject(o, "f", nd->file);
		snprintf(where, sizeof where, "%u", nd->line);
		cJSON_AddStringToObject(o, "l", where);
	}
	cJSON_AddNumberToObject(o, "v", (double)nd->v);
	cJSON_AddNumberToObject(o, "b", (double)nd->b);
	cJSON_AddNumberToObject(o, "c", (double)nd->n);
	if (diff)
		cJSON_AddNumberToObject(o, "d", (double)nd->v - (double)nd->old);
	size_t nk = 0;
	for (uint32_t c = nd->child; c != 0; c = t->node[c].sibling)
		nk += t->node[c].v > 0 || (diff && t->node[c].old > 0);
	if (nk == 0)
		return o;
	uint32_t *k = xcalloc(nk, sizeof(*k));
	size_t m = 0;
	for (uint32_t c = nd->child; c != 0; c = t->node[c].sibling)
		if (t->node[c].v > 0 || (diff && t->node[c].old > 0))
			k[m++] = c;
	sort_children(k, m, t);
	cJSON *arr = cJSON_AddArrayToObject(o, "k");
	for (size_t j = 0; j < m; j++)
		cJSON_AddItemToArray(arr, node_json(t, k[j], diff));
	free(k);
	return o;
}

static const char page_head[] =
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width\">\n<title>";

static const char page_style[] =
    "</title>\n<style>\n"
    "body{font:13px system-ui,sans-serif;margin:0;color:#222;background:#fff}\n"
    "header{padding:8px 12px;border-bottom:1px solid #ddd;display:flex;gap:12px;"
    "align-items:center;flex-wrap:wrap}\n"
    "header h1{font-size:15px;margin:0;font-weight:600}\n"
    "#info{color:#555}\n"
    "#chart{position:relative;margin:8px 12px;overflow:hidden}\n"
    ".frame{position:absolute;height:17px;line-height:17px;box-sizing:border-box;"
    "border:1px solid #fff;border-width:0 1px 1px 0;overflow:hidden;white-space:nowrap;"
    "font-size:11px;padding-left:3px;cursor:pointer;color:#111}\n"
    ".frame.match{background:#e040fb !important;color:#fff}\n"
    "#tip{position:fixed;display:none;background:#fffbe6;border:1px solid #bbb;padding:6px 8px;"
    "font-size:12px;pointer-events:none;max-width:60%;white-space:pre-wrap}\n"
    "button,input{font:inherit}\n"
    "</style></head>\n<body>\n<header><h1 id=\"title\"></h1>"
    "<input id=\"search\" type=\"search\" placeholder=\"Search functions\" size=\"24\">"
    "<button id=\"reset\" type=\"button\">Reset zoom</button><span id=\"info\"></span>"
    "</header>\n<div id=\"chart\"></div><div id=\"tip\"></div>\n"
    "<script id=\"data\" type=\"application/json\">";

static const char page_script[] =
    "</script>\n<script>\n"
    "'use strict';\n"
    "const D = JSON.parse(document.getElementById('data').textContent);\n"
    "const chart = document.getElementById('chart'), tip = document.getElementById('tip');\n"
    "const info = document.getElementById('info'), search = document.getElementById('search');\n"
    "const ROW = 18;\n"
    "let zoom = D.root;\n"
    "document.getElementById('title').textContent = D.title;\n"
    "document.title = D.title;\n"
    "function fmt(n) {\n"
    "  if (D.unit !== 'bytes') return String(n);\n"
    "  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB']; let i = 0, a = Math.abs(n);\n"
    "  while (a >= 10240 && i < u.length - 1) { a /= 1024; n /= 1024; i++; }\n"
    "  return (i > 0 && a < 100 ? n.toFixed(1) : Math.round(n)) + ' ' + u[i];\n"
    "}\n"
    "function colour(node) {\n"
    "  if (D.diff) {\n"
    "    if (node.d > 0) return 'hsl(0,' + Math.min(90, 30 + 60 * node.d / Math.max(1, "
    "node.v)) + '%,60%)';\n"
    "    if (node.d < 0) return 'hsl(220,60%,65%)';\n"
    "    return '#ccc';\n"
    "  }\n"
    "  let h = 0; for (const ch of node.n) h = (h * 31 + ch.charCodeAt(0)) >>> 0;\n"
    "  return 'hsl(' + (10 + h % 45) + ',80%,' + (58 + h % 12) + '%)';\n"
    "}\n"
    "function depth(node) { let d = 0; for (const c of node.k || []) d = Math.max(d, depth(c)); "
    "return d + 1; }\n"
    "function draw(node, x, w, row, out) {\n"
    "  if (w < 0.5) return;\n"
    "  const el = document.createElement('div');\n"
    "  el.className = 'frame';\n"
    "  el.style.left = x + 'px'; el.style.width = w + 'px'; el.style.top = row * ROW + 'px';\n"
    "  el.style.background = colour(node);\n"
    "  el.textContent = node.n;\n"
    "  el.dataset.name = node.n; el.dataset.value = node.v;\n"
    "  if (D.diff) el.dataset.delta = node.d;\n"
    "  el.onclick = () => { zoom = node; render(); };\n"
    "  el.onmousemove = (e) => showTip(e, node);\n"
    "  el.onmouseleave = () => { tip.style.display = 'none'; };\n"
    "  out.appendChild(el);\n"
    "  let cx = x;\n"
    "  for (const c of node.k || []) {\n"
    "    const cw = node.v > 0 ? w * c.v / node.v : 0;\n"
    "    draw(c, cx, cw, row + 1, out); cx += cw;\n"
    "  }\n"
    "}\n"
    "function showTip(e, node) {\n"
    "  const share = D.root.v > 0 ? (100 * node.v / D.root.v).toFixed(2) : '0';\n"
    "  let t = node.n + (node.f ? '\\n' + node.f + ':' + node.l : '') + '\\n' + D.what + ': ' "
    "+ fmt(node.v);\n"
    "  if (D.unit !== 'bytes' && node.b > 0) t += ' (' + node.b + ' B)';\n"
    "  if (D.unit === 'bytes') t += ' in ' + node.c + ' block' + (node.c === 1 ? '' : 's');\n"
    "  t += '\\n' + share + ' % of all';\n"
    "  if (D.diff) t += '\\nchange: ' + (node.d > 0 ? '+' : '') + fmt(node.d);\n"
    "  tip.textContent = t; tip.style.display = 'block';\n"
    "  tip.style.left = Math.min(e.clientX + 12, innerWidth - tip.offsetWidth - 4) + 'px';\n"
    "  tip.style.top = (e.clientY + 14) + 'px';\n"
    "}\n"
    "function render() {\n"
    "  const out = document.createDocumentFragment();\n"
    "  chart.textContent = '';\n"
    "  chart.style.height = depth(zoom) * ROW + 'px';\n"
    "  draw(zoom, 0, chart.clientWidth, 0, out);\n"
    "  chart.appendChild(out);\n"
    "  mark();\n"
    "}\n"
    "function mark() {\n"
    "  const q = search.value;\n"
    "  let hit = 0;\n"
    "  (function walk(node, under) {\n"
    "    const m = q !== '' && node.n.includes(q);\n"
    "    if (m && !under) hit += node.v;\n"
    "    for (const c of node.k || []) walk(c, under || m);\n"
    "  })(D.root, false);\n"
    "  for (const el of chart.children) {\n"
    "    el.classList.toggle('match', q !== '' && el.dataset.name.includes(q));\n"
    "  }\n"
    "  info.textContent = D.what + ': ' + fmt(D.root.v) + (q !== '' ? ' \\u2014 \"' + q + '\" "
    "matches ' + fmt(hit) + ' (' + (D.root.v > 0 ? (100 * hit / D.root.v).toFixed(2) : 0) + "
    "' %)' : '');\n"
    "}\n"
    "search.oninput = mark;\n"
    "document.getElementById('reset').onclick = () => { zoom = D.root; render(); };\n"
    "addEventListener('resize', render);\n"
    "render();\n"
    "</script>\n</body></html>\n";

struct sbuf {
	char *p;
	size_t n, cap;
};

static void sput(struct sbuf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->n + n + 1)
			cap *= 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

/* Text inside the page's elements: &, < and > escaped. */
static void sput_text(struct sbuf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '&')
			sput(b, "&amp;", 5);
		else if (*s == '<')
			sput(b, "&lt;", 4);
		else if (*s == '>')
			sput(b, "&gt;", 4);
		else
			sput(b, s, 1);
	}
}

/* JSON inside <script>: every '<' as \u003c. */
static void sput_json(struct sbuf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '<')
			sput(b, "\\u003c", 6);
		else
			sput(b, s, 1);
	}
}

char *flame_html(const struct snapshot *s, const struct snapshot *old, enum flame_value v,
                 const char *title, size_t *len)
{
	static const char *const what[] = {"live bytes", "live bytes at the peak", "allocations",
	                                   "temporary allocations"};
	struct ftree t = {0};
	struct sbuf b = {0};

	t.cap = 256;
	t.node = xcalloc(t.cap, sizeof(*t.node));
	t.node[0].name = "all";
	t.node[0].file = "";
	t.n = 1;
	add_stacks(&t, s, v, false);
	if (old != NULL)
		add_stacks(&t, old, v, true);

	cJSON *doc = cJSON_CreateObject();
	cJSON_AddStringToObject(doc, "title", title);
	cJSON_AddStringToObject(doc, "what", what[v]);
	cJSON_AddStringToObject(doc, "unit",
	                        v == FLAME_SIZE || v == FLAME_PEAK ? "bytes" : "count");
	cJSON_AddBoolToObject(doc, "diff", old != NULL);
	cJSON_AddItemToObject(doc, "root", node_json(&t, 0, old != NULL));
	char *json = cJSON_PrintUnformatted(doc);
	cJSON_Delete(doc);

	sput(&b, page_head, sizeof(page_head) - 1);
	sput_text(&b, title);
	sput(&b, page_style, sizeof(page_style) - 1);
	sput_json(&b, json);
	sput(&b, page_script, sizeof(page_script) - 1);
	cJSON_free(json);
	free(t.node);
	oaindex_close(&t.idx);
	*len = b.n;
	return b.p;
}
