// Switchboard SDK: a minimal event emitter.

/** Listeners by event name; a listener that throws does not stop the others. */
export class Emitter {
  /** @type {Map<string, Set<Function>>} */
  #listeners = new Map();

  /**
   * Add a listener.
   * @param {string} event
   * @param {Function} fn
   * @returns {this}
   */
  on(event, fn) {
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(fn);
    return this;
  }

  /**
   * Remove a listener (or all listeners of `event` when `fn` is omitted).
   * @param {string} event
   * @param {Function} [fn]
   * @returns {this}
   */
  off(event, fn) {
    if (!fn) this.#listeners.delete(event);
    else this.#listeners.get(event)?.delete(fn);
    return this;
  }

  /**
   * Add a listener called at most once.
   * @param {string} event
   * @param {Function} fn
   * @returns {this}
   */
  once(event, fn) {
    const wrapper = (/** @type {any} */ arg) => {
      this.off(event, wrapper);
      fn(arg);
    };
    return this.on(event, wrapper);
  }

  /**
   * Call the listeners of `event` with `arg`. An exception in a listener is rethrown
   * asynchronously (it shows up in the console as the application's bug) and does not
   * disturb the SDK.
   * @param {string} event
   * @param {unknown} [arg]
   * @returns {boolean} whether anyone listened
   */
  emit(event, arg) {
    const set = this.#listeners.get(event);
    if (!set || set.size === 0) return false;
    for (const fn of [...set]) {
      try {
        fn(arg);
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
    return true;
  }
}
