// What a notification says, from its type and data (the server sends data, not sentences).
// Grouped items (the blog's backend sends likes and comments with a group key per post and the
// actor's name) say who: "Bob and 2 others liked your post “Hello”".
import { formatActors, type Notification } from "belfry";

interface BlogData {
  post_id?: number;
  post_title?: string;
  actor_id?: string;
  actor_name?: string;
  /** The comment's text (`preview` from older blog backends). */
  comment?: string;
  preview?: string;
}

/** Who did it: the grouped actors when the server listed any, else the event's own actor. */
function who(n: Notification, data: BlogData): string {
  if ((n.actors ?? []).length > 0) return formatActors(n);
  return data.actor_name ?? data.actor_id ?? "Someone";
}

export function describeNotification(n: Notification): string {
  const data = n.data as BlogData;
  const title = data.post_title ? `“${data.post_title}”` : "your post";
  const count = n.count ?? 1;
  switch (n.type) {
    case "post.liked":
      return `${who(n, data)} liked your post ${title}`;
    case "comment.created": {
      const text = data.comment ?? data.preview;
      const times = count > 1 ? ` (${count} comments)` : "";
      return `${who(n, data)} commented on ${title}${times}${text ? `: ${text}` : ""}`;
    }
    default:
      return n.type;
  }
}
