/**
 * Text that is safe inside a comment of any language kgen generates (C and CUDA block and line
 * comments, WGSL's nesting block comments, WebAssembly text's `;;` and `(; ;)`, shell `#`).
 *
 * It is the only way text a user typed (a command line, a file name) reaches generated source:
 * templates take a `CommentText`, and only `commentText` makes one.
 */
export type CommentText = string & { readonly __commentText: unique symbol };

/**
 * Characters kept as they are. Left out on purpose: `*` (with `/` it opens or closes C and WGSL
 * block comments), `;` (with a parenthesis it opens or closes a WebAssembly text block comment),
 * `\` and `?` (a backslash-newline or the `??/` trigraph splices lines), and every control
 * character or line break (which would end a line comment).
 */
const KEPT = /[A-Za-z0-9 _.,:=+@%{}()[\]"'<>|&~^!#$-]/;

/**
 * Makes `text` inert in comments: every character outside a small safe set becomes `%XX` (its
 * UTF-8 bytes, as in a URL), and `%` itself becomes `%25`, so the text still reads as what was
 * typed (`kgen emit --ir my%20op.json`) and cannot end or escape the comment around it. `/` is
 * kept when no `*` could meet it (they are encoded), which keeps paths readable.
 */
export function commentText(text: string): CommentText {
  let out = '';
  for (const ch of text) {
    if (ch === '/' || (ch !== '%' && KEPT.test(ch))) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out as CommentText;
}
