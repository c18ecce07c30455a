// What a notification says, from its type and data (the server sends data, not sentences).
import type { Notification } from "belfry";

interface BlogData {
  post_id?: number;
  post_title?: string;
  actor_id?: string;
  actor_name?: string;
  preview?: string;
}

export function describeNotification(n: Notification): string {
  const data = n.data as BlogData;
  const actor = data.actor_name ?? data.actor_id ?? "Someone";
  const title = data.post_title ? `“${data.post_title}”` : "your post";
  switch (n.type) {
    case "post.liked":
      return `${actor} liked your post ${title}`;
    case "comment.created":
      return data.preview ? `${actor} commented on ${title}: ${data.preview}` : `${actor} commented on ${title}`;
    default:
      return n.type;
  }
}
