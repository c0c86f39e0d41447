/**
 * User text inside kgen's messages. Whatever a user typed (an op name, a path, a JSON value) is
 * shown through `quoted`, so a message stays one line whatever the text holds: control characters
 * and line breaks are escaped as in JSON, and long text is cut in the middle.
 */
export function quoted(text: string, max = 80): string {
  const json = JSON.stringify(text).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (json.length <= max) return json;
  const keep = Math.max(8, max - 5);
  return `${json.slice(0, Math.ceil(keep / 2))}...${json.slice(json.length - Math.floor(keep / 2))}`;
}

/**
 * A foreign message (a JSON parser's, a library's) reduced to one line of at most `max`
 * characters: line breaks and control characters become spaces.
 */
export function oneLine(text: string, max = 120): string {
  const flat = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ').trim();
  return flat.length <= max ? flat : `${flat.slice(0, max - 3)}...`;
}

/**
 * A path inside a message: as it is when it is plain (letters, digits and `_ . / @ : + , = -`),
 * else `quoted`, so an odd path cannot break the line or hide where it ends.
 */
export function pathText(path: string): string {
  return /^[\w./@:+,=-]{1,200}$/.test(path) ? path : quoted(path);
}

/** A JSON value inside a message (`got {"a":1}`): one line of at most `max` characters. */
export function valueText(v: unknown, max = 60): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(v);
  } catch {
    text = Array.isArray(v) ? '[...]' : '{...}'; // too deep or cyclic (a library caller's object)
  }
  return text === undefined ? String(v) : oneLine(text, max);
}

/** An argument as a POSIX shell reads it back: bare when it holds only safe characters, else in single quotes. */
export function shellArg(text: string): string {
  return /^[\w./:=,+-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}
