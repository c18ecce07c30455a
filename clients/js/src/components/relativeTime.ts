// "2 min. ago", "yesterday", "in 3 hr." via Intl.RelativeTimeFormat, with the largest unit that
// fits. Formatters are cached per locale and style: building one is far costlier than using it.

const UNITS: [Intl.RelativeTimeFormatUnit, number][] = [
  ["year", 365 * 24 * 3600],
  ["month", 30 * 24 * 3600],
  ["week", 7 * 24 * 3600],
  ["day", 24 * 3600],
  ["hour", 3600],
  ["minute", 60],
  ["second", 1],
];

const formatters = new Map<string, Intl.RelativeTimeFormat>();

function formatter(locale: string | undefined, style: Intl.RelativeTimeFormatStyle) {
  const key = `${locale ?? ""}|${style}`;
  let f = formatters.get(key);
  if (!f) {
    f = new Intl.RelativeTimeFormat(locale, { numeric: "auto", style });
    formatters.set(key, f);
  }
  return f;
}

export function formatRelativeTime(
  iso: string,
  options: { now?: number; locale?: string; style?: Intl.RelativeTimeFormatStyle } = {},
): string {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return "";
  const seconds = Math.round((then - (options.now ?? Date.now())) / 1000);
  const f = formatter(options.locale, options.style ?? "short");
  // Under a minute reads as "now": second-level precision only makes the list flicker.
  if (Math.abs(seconds) < 45) return f.format(0, "second");
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size || unit === "second") {
      return f.format(Math.round(seconds / size), unit);
    }
  }
  return f.format(seconds, "second");
}
