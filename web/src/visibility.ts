/**
 * Whether the page is visible to the user, as a small injectable source.
 *
 * The pinger depends on this interface rather than on `document`, so tests can flip
 * visibility by hand and the pinger stays free of any DOM or UI code.
 */

export interface VisibilitySource {
  isVisible(): boolean;
  /** Calls `listener` with the new visibility on every change; returns an unsubscribe function. */
  subscribe(listener: (visible: boolean) => void): () => void;
}

/** Visibility of a real document, from `visibilityState` and `visibilitychange`. */
export function documentVisibility(doc: Document = document): VisibilitySource {
  const isVisible = () => doc.visibilityState === 'visible';
  return {
    isVisible,
    subscribe(listener) {
      const onChange = () => {
        listener(isVisible());
      };
      doc.addEventListener('visibilitychange', onChange);
      return () => {
        doc.removeEventListener('visibilitychange', onChange);
      };
    },
  };
}
