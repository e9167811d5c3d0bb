// Waymark web push: subscribe this browser and register the subscription with Waymark.
//
//   <script src="https://WAYMARK/waymark-push.js"></script>
//   <script>
//     Waymark.subscribe({ writeKey: "wm_pk_…", userId: "customer-42" })   // or anonymousId
//   </script>
//
// The service worker must come from the shop's own origin: serve a copy of
// https://WAYMARK/waymark-sw.js at /waymark-sw.js (or pass serviceWorkerUrl).
// Call subscribe() from a user gesture (a click): browsers ask for permission then.
(function (global) {
  "use strict";
  const script = document.currentScript;
  const defaultApi = script ? new URL(script.src).origin : "";

  function keyBytes(base64url) {
    const padded = (base64url + "===".slice((base64url.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  }

  async function subscribe(options) {
    const opts = options || {};
    if (!opts.writeKey) throw new Error("Waymark.subscribe: writeKey is required");
    if (!opts.userId && !opts.anonymousId) throw new Error("Waymark.subscribe: userId or anonymousId");
    if (!("serviceWorker" in navigator) || !("PushManager" in global)) return null;
    const api = (opts.apiUrl || defaultApi).replace(/\/$/, "");
    const auth = { Authorization: "Basic " + btoa(opts.writeKey + ":") };

    if ((await Notification.requestPermission()) !== "granted") return null;
    const registration = await navigator.serviceWorker.register(opts.serviceWorkerUrl || "/waymark-sw.js");
    await navigator.serviceWorker.ready;

    const keyResponse = await fetch(api + "/v1/push/vapid-public-key", { headers: auth });
    if (!keyResponse.ok) throw new Error("Waymark: cannot fetch the VAPID key (" + keyResponse.status + ")");
    const { public_key } = await keyResponse.json();

    let subscription = await registration.pushManager.getSubscription();
    if (subscription) {
      const current = subscription.options && subscription.options.applicationServerKey;
      const same = current && btoa(String.fromCharCode(...new Uint8Array(current))) === btoa(String.fromCharCode(...keyBytes(public_key)));
      if (!same) { await subscription.unsubscribe(); subscription = null; }
    }
    if (!subscription) {
      subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: keyBytes(public_key),
      });
    }
    const response = await fetch(api + "/v1/push/subscriptions", {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/json" }, auth),
      body: JSON.stringify({
        userId: opts.userId || undefined,
        anonymousId: opts.anonymousId || undefined,
        subscription: subscription.toJSON(),
        userAgent: navigator.userAgent,
      }),
    });
    if (!response.ok) throw new Error("Waymark: subscription not stored (" + response.status + ")");
    return subscription;
  }

  global.Waymark = Object.assign(global.Waymark || {}, { subscribe });
})(window);
