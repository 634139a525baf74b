/**
 * A search box that reports what was typed once typing pauses, so a burst of keystrokes
 * costs one request. A query changed from outside (a shared link, the back button)
 * replaces what the box shows.
 */
import { useEffect, useRef, useState } from 'react';

export const SEARCH_DEBOUNCE_MS = 300;
/** The longest query the admin service accepts. */
export const MAX_QUERY_LENGTH = 100;

export function SearchField({ query, onSearch }: { query: string; onSearch: (query: string) => void }) {
  const [draft, setDraft] = useState(query);
  const [shown, setShown] = useState(query);
  if (query !== shown) {
    setShown(query);
    setDraft(query);
  }
  const report = useRef(onSearch);
  useEffect(() => {
    report.current = onSearch;
  }, [onSearch]);

  useEffect(() => {
    const wanted = draft.trim();
    if (wanted === query) return;
    const timer = setTimeout(() => {
      report.current(wanted);
    }, SEARCH_DEBOUNCE_MS);
    return () => {
      clearTimeout(timer);
    };
  }, [draft, query]);

  return (
    <div className="search" role="search">
      <label htmlFor="user-search">Rechercher un utilisateur</label>
      <input
        id="user-search"
        type="search"
        value={draft}
        maxLength={MAX_QUERY_LENGTH}
        placeholder="Nom d'utilisateur ou nom affiché"
        autoComplete="off"
        spellCheck={false}
        onChange={(event) => {
          setDraft(event.target.value);
        }}
      />
    </div>
  );
}
