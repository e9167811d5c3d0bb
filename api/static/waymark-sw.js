// Waymark's service worker: shows each push and opens its URL on click.
// The payload is JSON: { title, body, url, icon, image, badge, tag }. Clicks are tracked by the
// URL itself (a Waymark tracked link), so the worker needs no key.
self.addEventListener("push", (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch (e) { data = { body: event.data.text() }; }
  const options = {
    body: data.body || "",
    icon: data.icon,
    image: data.image,
    badge: data.badge,
    tag: data.tag,
    data: { url: data.url || "/" },
  };
  event.waitUntil(self.registration.showNotification(data.title || "", options));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = (event.notification.data && event.notification.data.url) || "/";
  event.waitUntil(self.clients.openWindow(url));
});
